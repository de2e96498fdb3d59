#!/usr/bin/env perl
# queue.pl: run one command, or a range of jobs, on a Slurm cluster and wait for them; the same
# command line and log format as run.pl, so recipes switch backends in cmd.sh only.
#
# Usage: queue.pl [options] [JOB=1:N] <log-file> <command...>
#
# How it works:
#  - A job script <log-dir>/q/<name>.sh is written and submitted once with sbatch (an array job
#    --array=1-N for a range). Generic options (--gpu, --mem, --num-threads, --time, --num-tasks,
#    --partition, and anything else the config defines) become sbatch flags through the config
#    file (--config; default conf/slurm.conf when it exists in the working directory, else the
#    built-in mapping below, which egs/TEMPLATE/conf/slurm.conf documents).
#  - Each task runs "bash -o pipefail -c '<command>'" in the submitting directory (after sourcing
#    ./path.sh when it exists) with JOB replaced by its task number, writes its log with run.pl's
#    header and footer, then its exit code to <log-dir>/q/done.<name>.<task>. queue.pl waits for
#    those files, and asks squeue now and then about tasks that have none, to report tasks that
#    left the queue without writing one (killed, node failure).
#  - TERM and USR1 sent to the job script are passed on to the command's process group, so a
#    trainer can save a checkpoint and exit 75. With --requeue true such a task is submitted
#    again, up to --max-requeue times; its log keeps every attempt.
#  - INT or TERM sent to queue.pl cancels its jobs (scancel).
# Exits 0 when every task succeeded, else prints "queue.pl: k / N failed, log is in <pattern>"
# with the failed logs, and exits 1.
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use File::Spec;
use POSIX ();
use Time::HiRes qw(sleep time);
use FindBin ();
use lib $FindBin::RealBin;
use JobArgs qw(join_command parse_job_args);

$ENV{LC_ALL} = 'C';

my $usage = <<'EOF';
Usage: queue.pl [options] [JOB=1:N] <log-file> <command...>
e.g.: queue.pl --mem 4G --num-threads 2 JOB=1:8 exp/log/extract.JOB.log python3 -m audiossl.bin.compute_fbank data/split8/JOB
Options:
  --config FILE          option -> sbatch flag mapping (default: conf/slurm.conf if it exists,
                         else the built-in one, which egs/TEMPLATE/conf/slurm.conf documents)
  --gpu N                GPUs per task (--gres=gpu:N; nothing for 0)
  --mem SIZE             memory per task, e.g. 8G (--mem=SIZE)
  --num-threads N        CPUs per task (--cpus-per-task=N)
  --num-tasks N          processes per job for a command that uses srun (--ntasks=N)
  --time T               time limit, e.g. 2:00:00 (--time=T)
  --partition NAME       partition (--partition=NAME)
  --max-jobs-run N       at most N array tasks at once (--array=1-N%N)
  --requeue true|false   resubmit a task that exits with code 75 (checkpoint saved, stopped
                         by TERM/USR1) [false]
  --max-requeue N        at most N resubmissions per task [10]
  --squeue-interval S    seconds between squeue checks for tasks that vanished [30]
  --dry-run true|false   write the job script, print the sbatch command, submit nothing [false]
  Any other "--name value" is looked up in the config ("option name=..." lines).
EOF

# The built-in config: keep it equal to egs/TEMPLATE/conf/slurm.conf (a test compares them).
my $default_config = <<'EOF';
command sbatch --export=PATH
option time=* --time=$0
option mem=* --mem=$0
option mem=0
option num_threads=* --cpus-per-task=$0
option num_tasks=* --ntasks=$0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
option partition=* --partition=$0
EOF

sub usage_error {
    my ($msg) = @_;
    print STDERR "queue.pl: $msg\n" if defined $msg;
    print STDERR $usage;
    exit 1;
}

sub fail {
    my ($msg) = @_;
    print STDERR "queue.pl: $msg\n";
    exit 1;
}

sub shell_quote {
    my ($s) = @_;
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

sub is_bool { return $_[0] eq 'true' || $_[0] eq 'false'; }

# ---- options ----
my ($config, $max_jobs_run, $requeue, $max_requeue, $squeue_interval, $dry_run) = (undef, undef, 'false', 10, 30, 'false');
my @generic;   # [name, value] in command-line order
while (@ARGV && $ARGV[0] =~ /^--/) {
    my $opt = shift @ARGV;
    if ($opt eq '--help') { print STDERR $usage; exit 0; }
    my $value;
    if ($opt =~ /^(--[^=]+)=(.*)$/) { ($opt, $value) = ($1, $2); }
    else {
        usage_error("option $opt needs a value") unless @ARGV;
        $value = shift @ARGV;
    }
    (my $name = substr($opt, 2)) =~ s/-/_/g;
    usage_error("invalid option $opt") unless $name =~ /^[A-Za-z]\w*$/;
    if ($name eq 'config') { $config = $value; }
    elsif ($name eq 'max_jobs_run') {
        usage_error("--max-jobs-run needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs_run = $value;
    } elsif ($name eq 'requeue') {
        usage_error("--requeue is a boolean: give true or false, not '$value'") unless is_bool($value);
        $requeue = $value;
    } elsif ($name eq 'max_requeue') {
        usage_error("--max-requeue needs a non-negative integer, got '$value'") unless $value =~ /^\d+$/;
        $max_requeue = $value;
    } elsif ($name eq 'squeue_interval') {
        usage_error("--squeue-interval needs a positive number of seconds, got '$value'") unless $value =~ /^\d+(\.\d+)?$/ && $value > 0;
        $squeue_interval = $value;
    } elsif ($name eq 'dry_run') {
        usage_error("--dry-run is a boolean: give true or false, not '$value'") unless is_bool($value);
        $dry_run = $value;
    } else { push @generic, [$name, $value]; }
}

# ---- job range, log, command ----
my ($jobvar, $first, $last, $log_arg, $command) = parse_job_args(\@ARGV, \&usage_error);
my $is_array = defined $jobvar;
my @tasks = ($first .. $last);

# ---- config: option name -> sbatch flags ----
my $config_name;
my $config_text;
if (!defined $config && -f 'conf/slurm.conf') { $config = 'conf/slurm.conf'; }
if (defined $config) {
    open(my $cf, '<', $config) or fail("cannot read config '$config' (from --config): $!; check the path");
    local $/;
    $config_text = <$cf>;
    close $cf;
    $config_name = $config;
} else {
    $config_text = $default_config;
    $config_name = 'the built-in config';
}
my @submit_command;
my (%opt_any, %opt_value, %defaults);   # name => flags; name => {value => flags}; name => value
my $lineno = 0;
for my $line (split /\n/, $config_text) {
    $lineno++;
    $line =~ s/#.*$//;
    $line =~ s/^\s+|\s+$//g;
    next if $line eq '';
    if ($line =~ /^command\s+(.+)$/) { @submit_command = split ' ', $1; }
    elsif ($line =~ /^option\s+(\w+)=\*(?:\s+(.*))?$/) { $opt_any{$1} = $2 // ''; }
    elsif ($line =~ /^option\s+(\w+)=(\S+)(?:\s+(.*))?$/) { $opt_value{$1}{$2} = $3 // ''; }
    elsif ($line =~ /^default\s+(\w+)=(\S+)$/) { $defaults{$1} = $2; }
    else {
        fail("$config_name:$lineno: cannot parse '$line'; expected 'command ...', 'option name=* flags \$0', 'option name=value [flags]' or 'default name=value'");
    }
}
fail("$config_name has no 'command' line; add e.g. 'command sbatch --export=PATH'") unless @submit_command;

my %given = map { $_->[0] => 1 } @generic;
my @options = @generic;
push @options, map { [$_, $defaults{$_}] } grep { !$given{$_} } sort keys %defaults;
my @sbatch_flags;
for my $o (@options) {
    my ($name, $value) = @$o;
    my $flags;
    if (exists $opt_value{$name} && exists $opt_value{$name}{$value}) { $flags = $opt_value{$name}{$value}; }
    elsif (exists $opt_any{$name}) { ($flags = $opt_any{$name}) =~ s/\$0/$value/g; }
    else {
        (my $dashed = $name) =~ s/_/-/g;
        fail("option --$dashed is not in $config_name; add a line like 'option $name=* --some-sbatch-flag=\$0' to it, or drop the option");
    }
    push @sbatch_flags, split(' ', $flags);
}

# ---- paths: absolute, so the job runs in this directory whatever the node's cwd. JOB is only
# replaced in the log name as given, never in the working directory around it.
my $cwd = getcwd();
sub task_log_arg { my ($t) = @_; my $l = $log_arg; $l =~ s/\Q$jobvar\E/$t/g if defined $jobvar; return $l; }
sub task_log { my ($t) = @_; return File::Spec->rel2abs(task_log_arg($t), $cwd); }
# The job-script directory: q/ next to the logs, above any directory named after the job id.
my $logdir = dirname($log_arg);
if (defined $jobvar) {
    $logdir = dirname($logdir) while index($logdir, $jobvar) >= 0 && $logdir ne '.' && $logdir ne '/';
    $logdir = '.' if index($logdir, $jobvar) >= 0;
}
my $qdir = File::Spec->rel2abs("$logdir/q", $cwd);
my $name = basename($log_arg);
if (defined $jobvar) { $name =~ s/\.?\Q$jobvar\E//g; }
$name =~ s/^\.+//;
$name = 'job' if $name eq '';
my $script = "$qdir/$name.sh";
my $status_prefix = "$qdir/done.$name";
sub status_file { my ($t) = @_; return "$status_prefix.$t"; }
sub slurm_out { my ($t) = @_; return $is_array ? "$qdir/$name.$t.out" : "$qdir/$name.out"; }

eval { make_path($qdir); 1 } or fail("cannot create $qdir: $@");

# ---- the job script ----
my $task_expr = $is_array ? '${SLURM_ARRAY_TASK_ID:?not an array task}' : $first;
my $cmd_sub = defined $jobvar ? "cmd=\${cmd//$jobvar/\${task}}\nlog=\${log//$jobvar/\${task}}" : ':';
my $job_script = <<"EOS";
#!/usr/bin/env bash
# Written by queue.pl; submitted with: SUBMIT_LINE
# Runs one task of: $log_arg
cd @{[shell_quote($cwd)]} || exit 1
if [ -f ./path.sh ]; then . ./path.sh; fi
export LC_ALL=C
task=$task_expr
cmd=@{[shell_quote($command)]}
log=@{[shell_quote($log_arg)]}
$cmd_sub
status=@{[shell_quote($status_prefix)]}.\${task}
mkdir -p "\$(dirname "\$log")"
{
    echo "# \${cmd}"
    echo "# Started at \$(date)"
    echo "# Running on \$(hostname) as Slurm job \${SLURM_JOB_ID:-?}\${SLURM_ARRAY_JOB_ID:+ (array \${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID})}"
} >> "\$log"
start=\$(date +%s)
# The command gets its own process group; TERM/USR1/INT sent to this script are passed on to it.
if command -v setsid > /dev/null; then
    setsid bash -o pipefail -c "\$cmd" < /dev/null >> "\$log" 2>&1 &
else
    bash -o pipefail -c "\$cmd" < /dev/null >> "\$log" 2>&1 &
fi
child=\$!
for sig in TERM USR1 INT; do
    # shellcheck disable=SC2064
    trap "kill -s \$sig -- -\$child 2> /dev/null || kill -s \$sig \$child 2> /dev/null" "\$sig"
done
while :; do
    wait "\$child"
    code=\$?
    kill -0 "\$child" 2> /dev/null || break
done
{
    echo "# Accounting: time=\$((\$(date +%s) - start))"
    echo "# Ended (code \${code}) at \$(date)"
} >> "\$log"
echo "\${code}" > "\${status}.tmp" && mv "\${status}.tmp" "\${status}"
exit "\${code}"
EOS

sub sbatch_args {
    my ($array_spec) = @_;
    my @args = (@submit_command, @sbatch_flags, '--parsable', "--chdir=$cwd", '--open-mode=append');
    if (defined $array_spec) { push @args, "--array=$array_spec", "--output=$qdir/$name.%a.out"; }
    else { push @args, "--output=$qdir/$name.out"; }
    push @args, $script;
    return @args;
}

my $first_spec;
if ($is_array) {
    $first_spec = "$first-$last";
    $first_spec .= "%$max_jobs_run" if defined $max_jobs_run;
}
my @first_args = sbatch_args($first_spec);
my $submit_line = join_command(@first_args);
$job_script =~ s/SUBMIT_LINE/$submit_line/;
{
    open(my $sf, '>', "$script.tmp") or fail("cannot write $script: $!");
    print $sf $job_script;
    close $sf or fail("cannot write $script: $!");
    chmod 0755, "$script.tmp";
    rename("$script.tmp", $script) or fail("cannot write $script: $!");
}

if ($dry_run eq 'true') {
    print "$submit_line\n";
    exit 0;
}

# Fresh start: stale logs, Slurm outputs and exit-status files of these tasks go.
for my $t (@tasks) { unlink(task_log($t), status_file($t), slurm_out($t)); }

sub submit {
    my ($array_spec) = @_;
    my @args = sbatch_args($array_spec);
    my $pid = open(my $out, '-|');
    fail("cannot fork: $!") unless defined $pid;
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec(@args) or do { print "cannot run $args[0]: $!\n"; POSIX::_exit(127); };
    }
    my $text = do { local $/; <$out> } // '';
    close $out;
    my $rc = $? >> 8;
    chomp $text;
    if ($rc != 0 || $text !~ /^(\d+)/m) {
        print STDERR "queue.pl: submitting $script failed (exit $rc): $text\n"
            . "queue.pl: the command was: " . join_command(@args) . "\n"
            . "queue.pl: check that Slurm is installed and reachable (sinfo; SLURM_CONF) and the flags from $config_name, or use run.pl\n";
        return undef;
    }
    return $1;
}

my %job_of;       # task -> Slurm job id ("123" or "123_4" for an array task)
my %requeues;     # task -> resubmissions so far
my %code;         # task -> exit code, or undef while running
my %vanished;     # task -> final Slurm state of a task that ended without an exit-status file
my %missing;      # task -> number of squeue checks in a row that did not list it as alive

my $job_id = submit($first_spec);
exit 1 unless defined $job_id;
for my $t (@tasks) { $job_of{$t} = $is_array ? "${job_id}_$t" : $job_id; }

my $cancel = sub {
    my ($sig) = @_;
    my %ids = map { (my $j = $job_of{$_}) =~ s/_.*//; ($j => 1) } grep { !defined $code{$_} } @tasks;
    my @ids = sort keys %ids;
    system('scancel', @ids) if @ids;
    print STDERR "queue.pl: caught SIG$sig; cancelled Slurm job(s) @ids; logs are in " . pattern() . "\n";
    exit 1;
};
$SIG{INT} = $cancel;
$SIG{TERM} = $cancel;

sub pattern { my $p = $log_arg; $p =~ s/\Q$jobvar\E/*/g if defined $jobvar; return $p; }

sub append_log {
    my ($t, $text) = @_;
    open(my $fh, '>>', task_log($t)) or return;
    print $fh $text;
    close $fh;
}

# Slurm states of our tasks that squeue still lists as alive; undef if squeue did not answer.
my %terminal = map { $_ => 1 } qw(COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL PREEMPTED BOOT_FAIL DEADLINE OUT_OF_MEMORY SPECIAL_EXIT REVOKED);
sub squeue_states {
    my %jobs = map { (my $j = $job_of{$_}) =~ s/_.*//; ($j => 1) } grep { !defined $code{$_} } @tasks;
    return {} unless %jobs;
    my $pid = open(my $out, '-|');
    return undef unless defined $pid;
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec('squeue', '-h', '-r', '-o', '%i %T', '-j', join(',', sort keys %jobs)) or POSIX::_exit(127);
    }
    my @lines = <$out>;
    close $out;
    my $rc = $? >> 8;
    my %state;
    for (@lines) { $state{$1} = $2 if /^(\d+(?:_\d+)?)\s+([A-Z_]+)\s*$/; }
    # squeue fails with "Invalid job id" once the jobs are purged: then none is alive. Any other
    # failure (controller unreachable) tells nothing.
    return undef if $rc != 0 && !grep { /Invalid job id/i } @lines;
    return \%state;
}

# ---- wait ----
my $poll = 0.1;
my $last_squeue = time;
my $squeue_warned = 0;
while (1) {
    my @pending = grep { !defined $code{$_} } @tasks;
    last unless @pending;
    for my $t (@pending) {
        my $sf = status_file($t);
        next unless -f $sf;
        open(my $fh, '<', $sf) or next;
        my $c = <$fh>;
        close $fh;
        next unless defined $c && $c =~ /^(\d+)/;
        $c = $1;
        if ($c == 75 && $requeue eq 'true' && ($requeues{$t} // 0) < $max_requeue) {
            my $n = ++$requeues{$t};
            unlink $sf;
            my $new = submit($is_array ? "$t" : undef);
            if (!defined $new) {   # counted as a failure; the other tasks are still waited for
                $code{$t} = $c;
                next;
            }
            $job_of{$t} = $is_array ? "${new}_$t" : $new;
            delete $missing{$t};
            my $msg = "queue.pl: task $t exited with code 75 (checkpoint saved, stopped by a signal); resubmitted as Slurm job $job_of{$t} (requeue $n of $max_requeue)";
            print STDERR "$msg\n";
            append_log($t, "# $msg\n");
            $poll = 0.1;
            next;
        }
        $code{$t} = $c;
        $poll = 0.1;
    }
    @pending = grep { !defined $code{$_} } @tasks;
    last unless @pending;
    if (time - $last_squeue >= $squeue_interval) {
        $last_squeue = time;
        my $states = squeue_states();
        if (!defined $states) {
            print STDERR "queue.pl: squeue did not answer; still waiting for the exit-status files in $qdir\n" unless $squeue_warned++;
        } else {
            for my $t (@pending) {
                my $s = $states->{$job_of{$t}};
                if (defined $s && !$terminal{$s}) { delete $missing{$t}; next; }
                next if -f status_file($t);
                # Not alive: allow one more check for the status file to show up (network file systems).
                if (++$missing{$t} >= 2) { $code{$t} = -1; $vanished{$t} = $s // ''; }
            }
        }
    }
    sleep $poll;
    $poll = $poll * 1.5 > 1 ? 1 : $poll * 1.5;
}

# ---- report ----
my @failed = grep { $code{$_} != 0 } @tasks;
exit 0 unless @failed;
my @details;
for my $t (@failed) {
    my $rel = task_log_arg($t);
    if (exists $vanished{$t}) {
        my $state = $vanished{$t} eq '' ? '' : " in state $vanished{$t}";
        push @details, "$rel (Slurm job $job_of{$t} left the queue$state without writing its exit status: killed or lost; Slurm's output is in " . slurm_out($t) . ")";
    } elsif ($code{$t} == 75 && $requeue eq 'true') {
        my $n = $requeues{$t} // 0;
        push @details, $n >= $max_requeue ? "$rel (code 75 again after $n requeues; raise --max-requeue or look at why it stops)"
                                          : "$rel (code 75; its resubmission failed)";
    } else {
        push @details, "$rel (code $code{$t})";
    }
}
splice(@details, 10, scalar(@details) - 10, '...') if @details > 10;
print STDERR "queue.pl: " . scalar(@failed) . " / " . scalar(@tasks) . " failed, log is in " . pattern() . "\n";
print STDERR "queue.pl: failed: $_\n" for @details;
exit 1;
