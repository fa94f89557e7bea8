#!/usr/bin/env bash
# The kvm.snapshots demo: the rm -rf disaster, rolled back.  Run as root:  demo/run.sh
#
# On a fresh Debian 12 machine it installs what it needs (Debian packages for libvirt,
# QEMU and the guest image; ansible-core and libvirt-python at the versions pinned in
# requirements-test.txt, in a virtualenv unless the Python at hand has them), brings up
# the test lab (tests/lab/lab.py up: libvirtd, a cached Debian guest image), boots one
# Debian guest, and plays demo/disaster.yml against it, printing each step:
#
#   snapshot the running guest -> rm -rf /usr/bin inside it -> commands fail
#   -> revert with kvm.snapshots.snapshot_revert -> the files are back -> delete the snapshot
#
# The guest is removed at the end, also when a step fails or the run is interrupted.
#
# Options:
#   --keep        keep the guest afterwards (remove it with: tests/lab/lab.py cleanup --prefix PREFIX)
#   -h, --help    show this help
#
# Environment: PYTHON (default python3) is the Python to use when it has ansible-core and
# libvirt-python; otherwise they are installed into DEMO_VENV
# (default /var/lib/kvm-snapshots-lab/demo-venv).
set -euo pipefail

keep=0
while (($#)); do
    case $1 in
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo/run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    say() { printf '\n==> %s\n' "$*"; }
fi

if ((EUID != 0)); then
    echo "demo/run.sh: run it as root (it starts libvirtd and defines a VM): sudo demo/run.sh" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off
apt_updated=0
apt_install() {  # apt_install PACKAGE...: install the ones that are missing
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || { echo "demo/run.sh: no apt-get; install ${missing[*]} by hand" >&2; exit 1; }
    say "Installing Debian packages: ${missing[*]}"
    if ((apt_updated == 0)); then apt-get update -q; apt_updated=1; fi
    apt-get install -y -q "${missing[@]}"
}

# ---------------------------------------------------------------------------------------
# 1. Python with ansible-core and libvirt-python
# ---------------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || { apt_install python3; PYTHON=python3; }

has_tools() { "$1" -c 'import ansible, libvirt' >/dev/null 2>&1; }

pinned() {  # pinned NAME: the NAME==VERSION line of requirements-test.txt
    grep -E "^$1==" requirements-test.txt
}

if has_tools "$PYTHON"; then
    PY=$("$PYTHON" -c 'import sys; print(sys.executable)')
else
    venv=${DEMO_VENV:-/var/lib/kvm-snapshots-lab/demo-venv}
    if ! has_tools "$venv/bin/python"; then
        say "Installing $(pinned ansible-core) and $(pinned libvirt-python) into $venv"
        # building libvirt-python needs libvirt's headers and a compiler (see bindep.txt)
        apt_install python3-venv python3-dev gcc pkg-config libvirt-dev
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q "$(pinned ansible-core)" "$(pinned libvirt-python)"
    fi
    PY=$venv/bin/python
fi
scripts=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
ANSIBLE_PLAYBOOK=$scripts/ansible-playbook
[[ -x $ANSIBLE_PLAYBOOK ]] || ANSIBLE_PLAYBOOK=$(command -v ansible-playbook)
echo "Python: $PY ($("$PY" -c 'import ansible, libvirt; print("ansible-core", ansible.__version__, "/ libvirt-python", libvirt.getVersion())'))"

# ---------------------------------------------------------------------------------------
# 2. The lab: libvirtd + QEMU, and the cached Debian guest image
# ---------------------------------------------------------------------------------------
say "Bringing up the lab: packages, libvirtd, the Debian guest image (built once, about 2 minutes)"
"$PY" tests/lab/lab.py up </dev/null

# ---------------------------------------------------------------------------------------
# 3. One guest, removed at the end whatever happens
# ---------------------------------------------------------------------------------------
prefix="kslab-demo-$(date +%H%M%S)-$$-"
collections=$(mktemp -d "${TMPDIR:-/tmp}/kvm-snapshots-demo.XXXXXX")
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if ((keep)); then
        say "Kept the guest; remove it with: $PY tests/lab/lab.py cleanup --prefix $prefix"
    else
        say "Removing the demo guest"
        "$PY" tests/lab/lab.py cleanup --prefix "$prefix" </dev/null || rc=1
    fi
    rm -rf "$collections"
    if ((rc == 0)); then say "Demo finished: the disaster was rolled back"; else say "Demo FAILED (exit $rc)"; fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

say "Booting a Debian guest, VM-3 (about 20 s of CPU under software emulation; longer on a busy machine)"
guest=$(KSLAB_PREFIX="$prefix" "$PY" - <<'EOF'
import os
import sys
import time

sys.path.insert(0, 'tests/lab')
import lab  # noqa: E402

the_lab = lab.Lab(prefix=os.environ['KSLAB_PREFIX'])
start = time.monotonic()
name = the_lab.guest_domain('VM-3')
the_lab.wait_agent(name, timeout=600)
print(f'{name} is up, its guest agent answers ({time.monotonic() - start:.0f} s)', file=sys.stderr)
print(name)
EOF
)

# ---------------------------------------------------------------------------------------
# 4. The scenario, as a playbook
# ---------------------------------------------------------------------------------------
mkdir -p "$collections/ansible_collections/kvm"
ln -s "$root" "$collections/ansible_collections/kvm/snapshots"
export ANSIBLE_COLLECTIONS_PATH=$collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_PYTHON_INTERPRETER=$PY ANSIBLE_RETRY_FILES_ENABLED=false
export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_DISPLAY_SKIPPED_HOSTS=false

say "Playing demo/disaster.yml on $guest"
"$ANSIBLE_PLAYBOOK" -i localhost, -c local demo/disaster.yml -e "kvm_domain=$guest" -e kvm_uri=qemu:///system
