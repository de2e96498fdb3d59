#!/usr/bin/env bash
# Make a new recipe directory: symlinks to the shared template script, path.sh and utils/, and its
# own copies of cmd.sh and conf/slurm.conf to edit. Add local/data.sh, conf/*.yaml and run.sh next.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "Usage: $0 <new-recipe-dir>" >&2
    echo "e.g.: $0 egs/my_corpus" >&2
    exit 1
fi
dir=$1
if [ -e "${dir}" ]; then
    echo "$0: ${dir} already exists; choose a new directory" >&2
    exit 1
fi
template=$(cd "$(dirname "$0")" && pwd)
mkdir -p "${dir}/conf" "${dir}/local"
dir=$(cd "${dir}" && pwd)
rel() { python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
ln -s "$(rel "${template}/audiossl.sh" "${dir}")" "${dir}/audiossl.sh"
ln -s "$(rel "${template}/path.sh" "${dir}")" "${dir}/path.sh"
ln -s "$(rel "${template}/../../utils" "${dir}")" "${dir}/utils"
cp "${template}/cmd.sh" "${dir}/cmd.sh"
cp "${template}/conf/slurm.conf" "${dir}/conf/slurm.conf"
cat > "${dir}/run.sh" <<'EOF_RUN'
#!/usr/bin/env bash
set -euo pipefail

./audiossl.sh \
    --train-set train \
    --valid-set dev \
    --test-sets "test" \
    "$@"
EOF_RUN
chmod +x "${dir}/run.sh"
echo "$0: made ${dir}; write ${dir}/local/data.sh and the conf/*.yaml your stages need"
