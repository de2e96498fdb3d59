# Where jobs run. "local": this machine (utils/run.pl). "slurm": a Slurm cluster (utils/queue.pl,
# generic options such as --gpu and --mem mapped to sbatch flags by conf/slurm.conf).
cmd_backend=local

case ${cmd_backend} in
    local)
        export train_cmd="utils/run.pl"
        export cuda_cmd="utils/run.pl"
        export feats_cmd="utils/run.pl"
        ;;
    slurm)
        export train_cmd="utils/queue.pl --config conf/slurm.conf --requeue true"
        export cuda_cmd="utils/queue.pl --config conf/slurm.conf"
        export feats_cmd="utils/queue.pl --config conf/slurm.conf --mem 4G"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 1
        ;;
esac
