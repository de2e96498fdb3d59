#!/usr/bin/env perl
# split_scp.pl: split a keyed file (wav.scp, utt2label, a list of ids, ...) into N contiguous parts
# of nearly equal line counts (they differ by at most one; the first parts get the extra lines).
# Line order is kept, so a sorted input gives sorted parts.
#
# Usage: split_scp.pl <in-file> <out-1> <out-2> ... <out-N>
use strict;
use warnings;

$ENV{LC_ALL} = 'C';

if (@ARGV < 2) {
    print STDERR "Usage: split_scp.pl <in-file> <out-1> <out-2> ... <out-N>\n";
    print STDERR "e.g.: split_scp.pl data/train/wav.scp exp/split/wav.1.scp exp/split/wav.2.scp\n";
    exit 1;
}
my ($in, @outs) = @ARGV;
open(my $fh, '<', $in) or do { print STDERR "split_scp.pl: cannot read $in: $!; check the path\n"; exit 1; };
my @lines = grep { /\S/ } <$fh>;
close $fh;
my ($n, $k) = (scalar @lines, scalar @outs);
if ($n < $k) {
    print STDERR "split_scp.pl: $in has $n non-empty lines, fewer than the $k parts asked for; split into at most $n parts\n";
    exit 1;
}
my $pos = 0;
for my $i (0 .. $k - 1) {
    my $size = int($n / $k) + ($i < $n % $k ? 1 : 0);
    open(my $out, '>', $outs[$i]) or do { print STDERR "split_scp.pl: cannot write $outs[$i]: $!; does its directory exist?\n"; exit 1; };
    print $out @lines[$pos .. $pos + $size - 1];
    close $out or do { print STDERR "split_scp.pl: cannot write $outs[$i]: $!\n"; exit 1; };
    $pos += $size;
}
exit 0;
