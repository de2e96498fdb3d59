# Environment for every stage: the project's Python (tools/venv, built on first use) and utils/.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
export MAIN_ROOT
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/activate_python.sh"
export PATH=${MAIN_ROOT}/utils:${PATH}
export LC_ALL=C
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=UTF-8
