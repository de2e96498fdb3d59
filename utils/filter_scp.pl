#!/usr/bin/env perl
# filter_scp.pl: print the lines of a keyed file whose key is (or, with --exclude, is not) in an id
# list. The id list's first field counts (so any keyed file serves as a list); the output keeps the
# input's order. With -f N the input's N-th field is the key (e.g. -f 2 picks segments by recording).
#
# Usage: filter_scp.pl [--exclude] [-f N] <id-list> [<in-file>] > <out-file>
use strict;
use warnings;

$ENV{LC_ALL} = 'C';

sub usage {
    print STDERR "Usage: filter_scp.pl [--exclude] [-f N] <id-list> [<in-file>] > <out-file>\n";
    print STDERR "e.g.: filter_scp.pl data/train/utt2label data/train/wav.scp > wav.kept.scp\n";
    print STDERR "Options:\n  --exclude   keep the lines whose key is NOT in the list\n";
    print STDERR "  -f N        the key is field N of the input (1-based) [1]\n";
    exit 1;
}

my ($exclude, $field) = (0, 1);
while (@ARGV && $ARGV[0] =~ /^-/ && $ARGV[0] ne '-') {
    my $opt = shift @ARGV;
    if ($opt eq '--exclude') { $exclude = 1; }
    elsif ($opt eq '-f') {
        usage() unless @ARGV && $ARGV[0] =~ /^[1-9]\d*$/;
        $field = shift @ARGV;
    } elsif ($opt =~ /^-f([1-9]\d*)$/) { $field = $1; }
    else { print STDERR "filter_scp.pl: invalid option $opt\n"; usage(); }
}
usage() if @ARGV < 1 || @ARGV > 2;
my ($list, $in) = @ARGV;

open(my $lf, '<', $list) or do { print STDERR "filter_scp.pl: cannot read id list $list: $!; check the path\n"; exit 1; };
my %keep;
while (<$lf>) {
    my ($id) = split;
    $keep{$id} = 1 if defined $id;
}
close $lf;

my $fh;
if (defined $in && $in ne '-') {
    open($fh, '<', $in) or do { print STDERR "filter_scp.pl: cannot read $in: $!; check the path\n"; exit 1; };
} else {
    $fh = \*STDIN;
}
while (my $line = <$fh>) {
    my @f = split ' ', $line;
    next unless @f >= $field;
    print $line if ($keep{$f[$field - 1]} ? 1 : 0) != $exclude;
}
exit 0;
