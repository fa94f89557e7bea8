"""Offline stand-in for the get-pip.py script that ansible-test downloads.

ansible-test bootstraps pip into each sanity-test virtual environment by
running ``~/.ansible/test/cache/get_pip_<version>.py``; when that file is
missing it downloads it from a host that machines without general internet
access cannot reach. tests/sanity/run.sh copies this file there (only when
nothing is there yet) so the bootstrap works wherever PyPI is reachable:

* ``ensurepip`` installs the pip bundled with this Python into the venv;
* that pip then installs the requested pip version from the package index
  configured for this machine (pip.conf is honoured: PIP_CONFIG_FILE is
  dropped from the environment), trusting the system CA bundle if present.

Arguments are the ones ansible-test gives get-pip.py: pip options and
requirement specifiers, plus get-pip's own ``--no-setuptools``/``--no-wheel``
(dropped here: the bundled pip installs neither).
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {'--no-setuptools', '--no-wheel', '--no-pip'}
CA_BUNDLES = ('/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt')


def main() -> int:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    ensurepip.bootstrap(upgrade=True)
    env = dict(os.environ)
    env.pop('PIP_CONFIG_FILE', None)
    command = [sys.executable, '-m', 'pip', 'install', '--upgrade']
    for bundle in CA_BUNDLES:
        if os.path.isfile(bundle):
            command += ['--cert', bundle]
            break
    return subprocess.call(command + args, env=env)


if __name__ == '__main__':
    sys.exit(main())
