#!/usr/bin/env perl
# run.pl: run one command, or a range of jobs, on this machine, a bounded number at a time, each
# with its own log. Same command line as queue.pl, so recipes switch backends in cmd.sh only.
#
# Usage: run.pl [options] [JOB=1:N] <log-file> <command...>
#
# Every job runs "bash -o pipefail -c '<command>'" with JOB replaced by the job number in the
# command and in the log name; stdin is /dev/null, stdout and stderr go to the log. Each log starts
# with "# <command>" and "# Started at <date>" and ends with "# Accounting: time=<seconds>" and
# "# Ended (code <exit code>) at <date>". Command words are joined with spaces; a word containing
# whitespace is single-quoted first, so pass shell syntax as separate words (e.g. \| or '>').
# Exits 0 when every job succeeded, else prints "run.pl: k / N failed, log is in <pattern>" and
# exits 1. INT or TERM stops the running jobs.
use strict;
use warnings;
use POSIX ();
use File::Basename qw(dirname);
use File::Path qw(make_path);
use FindBin ();
use lib $FindBin::RealBin;
use JobArgs qw(parse_job_args now);

$ENV{LC_ALL} = 'C';

my $usage = <<'EOF';
Usage: run.pl [options] [JOB=1:N] <log-file> <command...>
e.g.: run.pl JOB=1:4 exp/log/extract.JOB.log python3 -m audiossl.bin.compute_fbank data/split4/JOB
Options:
  --max-jobs-run N   run at most N jobs at the same time (default: the number of CPUs)
  Any other "--name value" pair (--gpu, --mem, --num-threads, --time, --num-tasks, --partition,
  --config, --requeue, ...) is a queue.pl option and is accepted and ignored here.
EOF

sub usage_error {
    my ($msg) = @_;
    print STDERR "run.pl: $msg\n" if defined $msg;
    print STDERR $usage;
    exit 1;
}

sub num_cpus {
    my $n = `nproc 2>/dev/null`;
    return ($n && $n =~ /^(\d+)/ && $1 > 0) ? $1 : 4;
}

# ---- options ----
my $max_jobs_run = num_cpus();
while (@ARGV && $ARGV[0] =~ /^--/) {
    my $opt = shift @ARGV;
    if ($opt eq '--help') { print STDERR $usage; exit 0; }
    my $value;
    if ($opt =~ /^(--[^=]+)=(.*)$/) {
        ($opt, $value) = ($1, $2);
    } else {
        usage_error("option $opt needs a value") unless @ARGV;
        $value = shift @ARGV;
    }
    if ($opt eq '--max-jobs-run') {
        usage_error("--max-jobs-run needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs_run = $value;
    }
    # other options belong to queue.pl: ignored
}

# ---- job range, log, command ----
my ($jobvar, $first, $last, $log_pattern, $command) = parse_job_args(\@ARGV, \&usage_error);

sub substitute {
    my ($text, $id) = @_;
    $text =~ s/\Q$jobvar\E/$id/g if defined $jobvar;
    return $text;
}

# ---- one job: header, command, footer; returns its exit code ----
sub run_job {
    my ($id) = @_;
    my $log = substitute($log_pattern, $id);
    my $cmd = substitute($command, $id);
    my $dir = dirname($log);
    eval { make_path($dir) unless -d $dir; 1 } or do { print STDERR "run.pl: cannot create log directory $dir: $@"; return 1; };
    open(my $fh, '>', $log) or do { print STDERR "run.pl: cannot write log $log: $!; check the directory permissions\n"; return 1; };
    print $fh "# $cmd\n# Started at " . now() . "\n";
    close $fh;
    my $start = time;
    my $pid = fork();
    return 1 unless defined $pid;
    if ($pid == 0) {
        open(STDIN, '<', '/dev/null') or die;
        open(STDOUT, '>>', $log) or die "run.pl: cannot append to $log: $!\n";
        open(STDERR, '>&', \*STDOUT) or die;
        exec('bash', '-o', 'pipefail', '-c', $cmd) or die "run.pl: cannot run bash: $!\n";
    }
    # forward INT/TERM from the job's process group leader (this process) to the command
    local $SIG{TERM} = sub { kill 'TERM', $pid; };
    local $SIG{INT} = sub { kill 'TERM', $pid; };
    my $status;
    while (1) {
        my $r = waitpid($pid, 0);
        if ($r == $pid) { $status = $?; last; }
        if ($r == -1) { $status = 255 << 8; last; }
    }
    my $code = ($status & 127) ? 128 + ($status & 127) : ($status >> 8);
    open($fh, '>>', $log) or return $code || 1;
    print $fh "# Accounting: time=" . (time - $start) . "\n# Ended (code $code) at " . now() . "\n";
    close $fh;
    return $code;
}

# ---- run the jobs, at most $max_jobs_run at a time ----
my %running;   # pid -> job id
my %codes;     # job id -> exit code
my $interrupted = 0;
my $stop = sub {
    $interrupted = 1;
    kill 'TERM', -$_ for keys %running;   # each job is its own process group
};
local $SIG{INT} = $stop;
local $SIG{TERM} = $stop;

sub reap_one {
    my $pid = waitpid(-1, 0);
    if ($pid == -1 && $!{ECHILD}) {   # no children left: none of ours can report any more
        $codes{$_} //= 255 for values %running;
        %running = ();
        return;
    }
    return if $pid <= 0 || !exists $running{$pid};
    my $id = delete $running{$pid};
    $codes{$id} = ($? & 127) ? 128 + ($? & 127) : ($? >> 8);
}

for my $id ($first .. $last) {
    last if $interrupted;
    reap_one() while keys(%running) >= $max_jobs_run;
    last if $interrupted;
    my $pid = fork();
    if (!defined $pid) {
        print STDERR "run.pl: cannot fork job $id: $!\n";
        $codes{$id} = 1;
        next;
    }
    if ($pid == 0) {
        $SIG{INT} = $SIG{TERM} = 'DEFAULT';
        POSIX::setpgid(0, 0);
        my $code = run_job($id);
        POSIX::_exit($code > 255 ? 255 : $code);
    }
    POSIX::setpgid($pid, $pid);   # also here, so that a TERM right after the fork reaches the group
    $running{$pid} = $id;
}
reap_one() while keys %running;

my $num_jobs = $last - $first + 1;
my @failed = grep { !defined $codes{$_} || $codes{$_} != 0 } ($first .. $last);
if (@failed) {
    (my $shown = $log_pattern) =~ s/\Q$jobvar\E/*/g if defined $jobvar;
    $shown = $log_pattern unless defined $jobvar;
    my @details = map { substitute($log_pattern, $_) . ' (' . (defined $codes{$_} ? "code $codes{$_}" : 'not run') . ')' } @failed;
    splice(@details, 10, scalar(@details) - 10, '...') if @details > 10;
    print STDERR "run.pl: interrupted; stopped the running jobs\n" if $interrupted;
    print STDERR "run.pl: " . scalar(@failed) . " / $num_jobs failed, log is in $shown\n";
    print STDERR "run.pl: failed: " . join(', ', @details) . "\n";
    exit 1;
}
exit 0;
