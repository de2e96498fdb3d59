# JobArgs: what run.pl and queue.pl share: the "[JOB=1:N] <log> <command...>" arguments, how
# command words become one bash command line, and the date format of the log header and footer.
package JobArgs;
use strict;
use warnings;
use POSIX ();
use Exporter 'import';
our @EXPORT_OK = qw(join_command parse_job_args now);

# Join command words into one bash command line (words with whitespace or nothing in them are
# single-quoted; everything else is passed through, so "\|" becomes a pipe).
sub join_command {
    my @out;
    for my $w (@_) {
        if ($w ne '' && $w !~ /\s/) { push @out, $w; }
        else { (my $q = $w) =~ s/'/'\\''/g; push @out, "'$q'"; }
    }
    return join(' ', @out);
}

# parse_job_args(\@ARGV, \&usage_error) -> ($jobvar or undef, $first, $last, $log, $command).
# Takes "[JOB=a:b | JOB=a] <log> <command...>" off the array; a job range needs a log name with
# the job variable in it (one log per job).
sub parse_job_args {
    my ($argv, $usage_error) = @_;
    my ($jobvar, $first, $last) = (undef, 1, 1);
    if (@$argv && $argv->[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
        ($jobvar, $first, $last) = ($1, $2, $3);
        shift @$argv;
        $usage_error->("empty job range $jobvar=$first:$last (the first job is after the last)") if $first > $last;
    } elsif (@$argv && $argv->[0] =~ /^([A-Za-z_]\w*)=(\d+)$/) {
        ($jobvar, $first, $last) = ($1, $2, $2);
        shift @$argv;
    }
    $usage_error->("expected a log file and a command") if @$argv < 2;
    my $log = shift @$argv;
    my $command = join_command(@$argv);
    if (defined $jobvar && index($log, $jobvar) < 0) {
        $usage_error->("the log name '$log' must contain $jobvar when a job range is given (one log per job), e.g. exp/log/x.$jobvar.log");
    }
    return ($jobvar, $first, $last, $log, $command);
}

sub now { return POSIX::strftime('%a %b %e %H:%M:%S %Z %Y', localtime); }

1;
