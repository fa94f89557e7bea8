#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_info
short_description: List the snapshots of libvirt domains, their tree and the current one
version_added: 0.1.0
description:
  - Reads the snapshots of one KVM/QEMU domain, or of every domain of the hypervisor, and returns as data
    what C(virsh snapshot-list --tree), C(virsh snapshot-info) and C(virsh snapshot-current) show.
  - Also returns, per domain, the facts a preflight needs (power state, memory, disks with their format and
    the free space under them, guest agent channel) and the libvirt version of the daemon, so that roles and
    playbooks need no C(virsh) on the hypervisor; with a remote O(uri) nothing runs there but libvirtd.
  - Never changes anything.
  - With a local O(uri), checks that each internal snapshot libvirt lists is in the snapshot table of every
    qcow2 image it covers, and that the images hold no snapshot libvirt does not list (RV(snapshots[].consistent),
    RV(domains) C(image_only)); a mismatch is also a warning. The table is read from the image's header,
    read-only, also while the domain runs.
  - Also returns what the snapshots hold on disk (RV(snapshots[].size_bytes) and its parts), the virtual and allocated
    size of each disk, and the free and total space of each storage the domain's files live on
    (RV(domains) C(storage)). Nothing is written or locked to read them, so a running guest is not disturbed; the
    collection's docs/sizes.md says what each number means and how exact it is.
author:
  - kvm.snapshots contributors (@kvm-snapshots)
extends_documentation_fragment:
  - kvm.snapshots._libvirt
  - kvm.snapshots._libvirt.attributes
  - kvm.snapshots._attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: N/A
    details: The module only reads.
  idempotent:
    support: full
options:
  domain:
    description:
      - The libvirt name of the domain (virtual machine) to read.
      - Left out, every domain of the hypervisor (running or not) is read.
      - A domain that does not exist fails the task.
      - Mutually exclusive with O(domains).
    type: str
  domains:
    description:
      - Read only these domains (exact libvirt names, no globs), in one run. A play over many guests of one
        hypervisor reads them so instead of one task per guest, or instead of every domain of the hypervisor.
      - A domain that does not exist, or cannot be read, does not fail the task; it is left out of RV(domains) and
        RV(snapshots), and RV(errors) holds its message.
    type: list
    elements: str
  name:
    description:
      - Return only the snapshot of this name in RV(snapshots).
      - A name that does not exist gives an empty RV(snapshots), not an error.
      - Without O(domain), the snapshot of this name of every domain.
      - RV(current), RV(tree) and RV(domains) always describe all snapshots of the domains read.
    type: str
notes:
  - Snapshots deleted by another run while they are being read are left out, not an error.
  - The free space under a disk (C(free_bytes) in RV(domains)) is read from the file system of the machine the module
    runs on, so only with a local O(uri) (V(qemu:///system), or a host name of V(localhost)); through a remote URI
    libvirt does not tell it, and it is V(null).
  - Sizes that cannot be read (an image or file that is gone or unreadable, a file outside any storage pool through a
    remote O(uri)) are V(null); an image or disk that cannot be read is also a warning, never a failure, so that one
    broken domain does not hide the others.
  - Through a remote O(uri), the VM state size of internal snapshots is V(null) (it is read from the image's header,
    which only a local O(uri) can reach), and the sizes of memory and overlay files are read from the storage pool
    that holds them (V(null) for a file in no pool, or one the pool has not listed yet); storage is a pool then.
seealso:
  - module: kvm.snapshots.snapshot
  - module: kvm.snapshots.snapshot_revert
  - module: kvm.snapshots.snapshot_prune
'''

EXAMPLES = r'''
- name: List the snapshots of web1
  kvm.snapshots.snapshot_info:
    domain: web1
  register: web1_snapshots

- name: Show the names, parents first
  ansible.builtin.debug:
    msg: "{{ web1_snapshots.snapshots | map(attribute='name') | list }}"

- name: Find out whether web1 has a pre-upgrade snapshot
  kvm.snapshots.snapshot_info:
    domain: web1
    name: pre-upgrade
  register: pre_upgrade

- name: Fail when it is missing
  ansible.builtin.assert:
    that: pre_upgrade.snapshots | length == 1
    fail_msg: web1 has no pre-upgrade snapshot

- name: Read the snapshots of every VM on a remote hypervisor
  kvm.snapshots.snapshot_info:
    uri: qemu+ssh://root@hv1.example.com/system
  register: hv1_snapshots

- name: Show how many snapshots each VM has
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.count }} snapshots, current {{ item.value.current }}"
  loop: "{{ hv1_snapshots.domains | dict2items }}"
  loop_control:
    label: "{{ item.key }}"

- name: Read web1 and its disks from the controller, through SSH
  kvm.snapshots.snapshot_info:
    domain: web1
    uri: qemu+ssh://root@hv1.example.com/system?keyfile=/home/ops/.ssh/id_ed25519&no_tty=1
  delegate_to: localhost
  register: web1_info

- name: Show what the snapshots of every VM hold and the space left under them
  ansible.builtin.debug:
    msg: >-
      {{ item.key }}: snapshots hold {{ item.value.snapshot_bytes | human_readable }}, bytes free by storage
      {{ item.value.storage | items2dict(key_name='path', value_name='free_bytes') }}
  loop: "{{ hv1_snapshots.domains | dict2items }}"
  loop_control:
    label: "{{ item.key }}"

- name: Fail when a disk of web1 cannot take an internal snapshot
  ansible.builtin.assert:
    that: web1_info.domains.web1.disks | rejectattr('format', 'equalto', 'qcow2') | list | length == 0
    fail_msg: web1 has a disk that is not qcow2
'''

RETURN = r'''
snapshots:
  description:
    - The snapshots read (only the one named O(name) when it is given), parents before their children,
      siblings oldest first; domains in the order of their names.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot name, exactly as stored.
      type: str
      returned: always
      sample: pre-upgrade
    domain:
      description: The domain the snapshot belongs to.
      type: str
      returned: always
      sample: web1
    description:
      description: The free-text description, exactly as stored; V(null) when it has none.
      type: str
      returned: always
      sample: Before the kernel upgrade of ticket OPS-1234
    state:
      description:
        - The state of the domain when the snapshot was taken (V(running), V(paused), V(shutoff)),
          or V(disk-snapshot) for a disk-only snapshot.
      type: str
      returned: always
      sample: running
    creation_time:
      description: When the snapshot was taken, ISO 8601 in UTC; V(null) when libvirt records no time, or one past the year 9999.
      type: str
      returned: always
      sample: '2026-11-25T19:40:15Z'
    creation_time_epoch:
      description: When the snapshot was taken, seconds since the epoch.
      type: int
      returned: always
      sample: 1795635615
    parent:
      description: The name of the parent snapshot; V(null) for a root.
      type: str
      returned: always
      sample: base
    children:
      description: The names of the direct children, oldest first.
      type: list
      elements: str
      returned: always
      sample: [after-upgrade]
    current:
      description: Whether this is the domain's current snapshot (the one a revert without a name goes to).
      type: bool
      returned: always
      sample: true
    location:
      description: V(internal) (inside the qcow2 images) or V(external) (overlay files).
      type: str
      returned: always
      sample: internal
    memory:
      description: Where the memory state is kept, V(internal), V(external) or V(no) (disks only).
      type: str
      returned: always
      sample: internal
    memory_file:
      description: The file that holds the memory of an external snapshot with memory, V(null) otherwise.
      type: str
      returned: always
      sample: /var/lib/libvirt/images/web1.pre-upgrade.memory
    disks:
      description: The disks the snapshot covers.
      type: list
      elements: dict
      returned: always
      sample: [{name: vda, snapshot: external, file: /var/lib/libvirt/images/web1.pre-upgrade,
                backing_file: /var/lib/libvirt/images/web1.qcow2}]
      contains:
        name:
          description: The disk's target name.
          type: str
          returned: always
          sample: vda
        snapshot:
          description: How the disk is snapshotted, V(internal), V(external) or V(no).
          type: str
          returned: always
          sample: external
        file:
          description:
            - The overlay file of an external snapshot, V(null) otherwise.
            - It holds what was written after the snapshot (after the last revert to it, a new overlay named
              C(<image>.<epoch seconds>)); deleting the snapshot merges it into RV(snapshots[].disks[].backing_file).
          type: str
          returned: always
          sample: /var/lib/libvirt/images/web1.pre-upgrade
        backing_file:
          description:
            - The image that holds an external snapshot's own state of the disk (the disk's file when the snapshot
              was taken), V(null) for other snapshots.
          type: str
          returned: always
          sample: /var/lib/libvirt/images/web1.qcow2
    consistent:
      description:
        - For an internal snapshot, whether every qcow2 image it covers holds it (QEMU's C(info snapshots),
          C(qemu-img snapshot -l)). V(false) means libvirt keeps a record without the data behind it (it cannot
          be reverted to), for instance after a tool handed the wrong name to QEMU; a warning says which images
          miss it.
        - V(null) when it cannot be told here (a remote O(uri), an external snapshot, a domain with external
          snapshots, an image that cannot be read).
      type: bool
      returned: always
      sample: true
    memory_bytes:
      description:
        - The memory (VM state) the snapshot holds, in bytes.
        - For an internal snapshot with memory, the VM state size QEMU recorded in the snapshot table of the qcow2
          image(s), summed over the domain's disks (QEMU saves it in one of them); exact, as C(qemu-img info)
          shows it in C(vm-state-size).
        - For an external snapshot with memory, the bytes allocated to the memory file (C(st_blocks) times 512 with a
          local O(uri), the storage volume's allocation through a remote one).
        - V(null) for a snapshot without memory, or when it cannot be read (remote O(uri) for an internal snapshot,
          an image or file that cannot be read).
      type: int
      returned: always
      sample: 287309824
    overlay_bytes:
      description:
        - For an external snapshot, the bytes allocated to its overlay files (RV(snapshots[].disks[].file)), summed.
          An overlay holds what was written after the snapshot, so the newest one grows while the domain runs.
        - V(null) for an internal snapshot, or when one of the overlays cannot be read.
      type: int
      returned: always
      sample: 10747904
    size_bytes:
      description:
        - What the snapshot holds on disk, as far as it can be known cheaply, in bytes.
        - External snapshot, the memory file and the overlays (the parts that could be read).
        - Internal snapshot, its VM state only (V(0) for one without memory); the disk clusters only this snapshot
          still references are not counted (finding them means reading every refcount of the image), so this is a
          lower bound. V(null) when the VM state size cannot be read.
      type: int
      returned: always
      sample: 287309824
    group:
      description:
        - The application group the snapshot belongs to (taken by M(kvm.snapshots.snapshot_group)), read from the
          marker line at the end of its description; V(null) for a snapshot of no group.
        - C(name) is the group snapshot's name, C(id) the id of the group taken (new for every group taken),
          C(members) its members, each with C(domain), C(uri) (without password) and C(state) (its power state
          when the group was taken).
      type: dict
      returned: always
      sample:
        name: pre-upgrade
        id: 3f2a9c0e8b7d4e1f9a6b5c4d3e2f1a0b
        members:
          - {domain: db1, uri: 'qemu+ssh://root@hv1/system', state: running}
          - {domain: app1, uri: 'qemu+ssh://root@hv2/system', state: running}
    size_exact:
      description:
        - Whether RV(snapshots[].size_bytes) is the exact number of bytes the snapshot's files take.
        - V(true) for an external snapshot whose memory file and overlays could all be read (exact when read; a
          running domain keeps writing into its newest overlay).
        - V(false) for an internal snapshot (a lower bound, see RV(snapshots[].size_bytes)) and for an external one
          with a part that could not be read.
      type: bool
      returned: always
      sample: false
  sample:
    - name: base
      domain: web1
      description: null
      state: shutoff
      creation_time: '2026-11-20T08:00:00Z'
      creation_time_epoch: 1795161600
      parent: null
      children: [pre-upgrade]
      current: false
      location: internal
      memory: 'no'
      memory_file: null
      disks: [{name: vda, snapshot: internal, file: null, backing_file: null}]
      consistent: true
      memory_bytes: null
      overlay_bytes: null
      size_bytes: 0
      size_exact: false
      group: null
    - name: pre-upgrade
      domain: web1
      description: Before the kernel upgrade of ticket OPS-1234
      state: running
      creation_time: '2026-11-25T19:40:15Z'
      creation_time_epoch: 1795635615
      parent: base
      children: []
      current: true
      location: internal
      memory: internal
      memory_file: null
      disks: [{name: vda, snapshot: internal, file: null, backing_file: null}]
      consistent: true
      memory_bytes: 287309824
      overlay_bytes: null
      size_bytes: 287309824
      size_exact: false
      group: null
current:
  description: The name of the current snapshot of O(domain); V(null) when it has none.
  returned: when O(domain) is given
  type: str
  sample: pre-upgrade
tree:
  description:
    - The snapshot tree of O(domain), one node per snapshot in depth-first order (each parent right before
      its descendants, siblings oldest first). Indenting each C(name) by its C(depth) draws the tree as
      C(virsh snapshot-list --tree) does.
    - Flat rather than nested, so that a long chain of snapshots stays a shallow structure that Ansible can
      pass around and print.
  returned: when O(domain) is given
  type: list
  elements: dict
  contains:
    name:
      description: The name of the snapshot.
      type: str
      returned: always
      sample: pre-upgrade
    depth:
      description: How many ancestors it has (V(0) for a root).
      type: int
      returned: always
      sample: 1
    parent:
      description: The name of its parent; V(null) for a root.
      type: str
      returned: always
      sample: base
    children:
      description: The names of its children, oldest first.
      type: list
      elements: str
      returned: always
      sample: []
  sample:
    - {name: base, depth: 0, parent: null, children: [pre-upgrade, experiment]}
    - {name: pre-upgrade, depth: 1, parent: base, children: []}
    - {name: experiment, depth: 1, parent: base, children: []}
domains:
  description:
    - Every domain read (only O(domain) when it is given), by name, with the name of its current snapshot
      (C(current), V(null) when none), its snapshot tree (C(tree), as RV(tree)), its number of
      snapshots (C(count)), and the facts of the domain itself.
  returned: always
  type: dict
  contains:
    current:
      description: The name of the current snapshot; V(null) when none.
      type: str
      returned: always
      sample: pre-upgrade
    count:
      description: The number of snapshots.
      type: int
      returned: always
      sample: 2
    tree:
      description: The snapshot tree, as RV(tree).
      type: list
      elements: dict
      returned: always
      sample: [{name: base, depth: 0, parent: null, children: []}]
    state:
      description:
        - The power state of the domain, in the words of C(virsh domstate) without spaces
          (V(running), V(paused), V(shutoff), V(shutdown), V(crashed), V(pmsuspended), V(blocked), V(nostate)).
      type: str
      returned: always
      sample: running
    memory_mib:
      description: The current memory of the domain in MiB (what a snapshot with memory saves, at most).
      type: int
      returned: always
      sample: 2048
    agent_channel:
      description: Whether the domain has a guest agent channel (C(org.qemu.guest_agent.0)).
      type: bool
      returned: always
      sample: true
    image_only:
      description:
        - Internal snapshots the domain's qcow2 images hold that libvirt does not list (left by an interrupted
          snapshot, or by a name QEMU misread); a warning names them. Remove one with
          C(qemu-img snapshot -d NAME IMAGE) with the domain shut off.
        - Empty when none, or when it cannot be told (see RV(snapshots[].consistent)).
      type: list
      elements: str
      returned: always
      sample: []
    snapshot_bytes:
      description:
        - The sum of RV(snapshots[].size_bytes) of the domain's snapshots (those known; a lower bound when one is
          not exact or not known).
      type: int
      returned: always
      sample: 287309824
    storage:
      description:
        - One entry per file system (local O(uri)) or storage pool (remote O(uri)) that holds a file of the domain
          (its disks, the overlays and backing files of its snapshots, their memory files), ordered by path.
        - Through a remote O(uri), a file in no storage pool gets an entry for its directory with V(null) space.
      type: list
      elements: dict
      returned: always
      contains:
        path:
          description:
            - The mount point of the file system (local O(uri)), the target path of the storage pool (remote
              O(uri)), or the file's directory when neither can be told.
          type: str
          returned: always
          sample: /var/lib/libvirt/images
        pool:
          description: The name of the storage pool; V(null) for a file system read locally, or when none holds the file.
          type: str
          returned: always
          sample: null
        free_bytes:
          description:
            - Bytes free, for unprivileged users (C(df)'s C(Avail)) or the pool's available bytes; V(null) when unknown.
          type: int
          returned: always
          sample: 53687091200
        total_bytes:
          description: The size of the file system or the pool's capacity in bytes; V(null) when unknown.
          type: int
          returned: always
          sample: 107374182400
        snapshot_bytes:
          description:
            - The bytes of the domain's snapshots held by files on this storage (the parts of
              RV(snapshots[].size_bytes) by the file that holds them).
          type: int
          returned: always
          sample: 287309824
    disks:
      description:
        - The disks a snapshot can cover (not CD-ROMs, not read-only disks), in the order of the domain XML.
      type: list
      elements: dict
      returned: always
      contains:
        name:
          description: The target name of the disk.
          type: str
          returned: always
          sample: vda
        type:
          description: The disk type of the domain XML (V(file), V(block), V(network), V(volume)).
          type: str
          returned: always
          sample: file
        format:
          description: The image format (V(qcow2), V(raw)); V(null) when the domain XML names none.
          type: str
          returned: always
          sample: qcow2
        file:
          description: The file (or device, or volume name) behind the disk; V(null) for an empty one.
          type: str
          returned: always
          sample: /var/lib/libvirt/images/web1.qcow2
        snapshot:
          description:
            - The disk's own snapshot setting in the domain XML (V(no) leaves it out of snapshots);
              V(null) when it has none.
          type: str
          returned: always
          sample: null
        free_bytes:
          description:
            - Bytes free for unprivileged users on the file system that holds the file.
            - V(null) when O(uri) is remote (libvirt does not tell it), the disk is not a file, or its directory
              cannot be read.
          type: int
          returned: always
          sample: 53687091200
        allocation_bytes:
          description:
            - Bytes the disk's image takes on its storage, as libvirt's block info (C(virsh domblkinfo)) tells it;
              for a qcow2 file the allocated bytes of the file (C(qemu-img info)'s C(actual-size)), read from QEMU
              while the domain runs. Only the image itself, not its backing files.
            - V(null) when libvirt cannot tell it (a warning says why), the drive is empty, or a libvirt job is
              talking to QEMU for the domain (an internal snapshot being taken; libvirt would wait for its end).
          type: int
          returned: always
          sample: 2147745792
        capacity_bytes:
          description:
            - The virtual size of the disk (what the guest sees), as libvirt's block info tells it; V(null) when
              unknown.
          type: int
          returned: always
          sample: 21474836480
  sample:
    web1:
      current: pre-upgrade
      count: 2
      tree:
        - {name: base, depth: 0, parent: null, children: [pre-upgrade]}
        - {name: pre-upgrade, depth: 1, parent: base, children: []}
      state: running
      memory_mib: 2048
      agent_channel: true
      image_only: []
      snapshot_bytes: 287309824
      storage:
        - {path: /var/lib/libvirt/images, pool: null, free_bytes: 53687091200, total_bytes: 107374182400,
           snapshot_bytes: 287309824}
      disks:
        - name: vda
          type: file
          format: qcow2
          file: /var/lib/libvirt/images/web1.qcow2
          snapshot: null
          free_bytes: 53687091200
          allocation_bytes: 2147745792
          capacity_bytes: 21474836480
    db1:
      current: null
      count: 0
      tree: []
      state: shutoff
      memory_mib: 4096
      agent_channel: false
      image_only: []
      snapshot_bytes: 0
      storage:
        - {path: /var/lib/libvirt/images, pool: null, free_bytes: 53687091200, total_bytes: 107374182400,
           snapshot_bytes: 0}
      disks:
        - name: vda
          type: file
          format: qcow2
          file: /var/lib/libvirt/images/db1.qcow2
          snapshot: null
          free_bytes: 53687091200
          allocation_bytes: 1073938432
          capacity_bytes: 21474836480
errors:
  description: With O(domains), the message of each domain that does not exist or could not be read, by name.
  returned: when O(domains) is given
  type: dict
  sample: {web9: 'Domain "web9" does not exist on qemu:///system (check the name with "virsh list --all" on that hypervisor).'}
libvirt_version:
  description: The version of libvirt of the daemon the module talked to (on the hypervisor), as C(X.Y.Z).
  returned: always
  type: str
  sample: 9.0.0
'''

import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import (
    domain_busy,
    domain_disks,
    domain_state,
    has_agent_channel,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._group import parse_group
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    ERR_NO_DOMAIN,
    LibvirtError,
    SnapshotError,
    error_code,
    libvirt_errors,
    version_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import is_local_uri
from ansible_collections.kvm.snapshots.plugins.module_utils._qcow2 import (
    Qcow2Error,
    compare_internal,
    read_snapshot_names,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._sizes import (
    SizeReader,
    domain_files,
    snapshot_sizes,
    storage_summary,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import list_snapshots, snapshot_tree
from ansible_collections.kvm.snapshots.plugins.module_utils._storage import free_bytes


class SnapshotInfo:
    """Reads the snapshots of one domain or of all of them."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.domain: str | None = client.params['domain']
        self.domains: list[str] | None = client.params['domains']
        self.name: str | None = client.params['name']
        self._sizes: SizeReader | None = None

    @property
    def sizes(self) -> SizeReader:
        """The reader of sizes, on the connection (opened on first use)."""
        if self._sizes is None:
            self._sizes = SizeReader(self.client.conn, is_local_uri(self.client.uri), self.client.module.warn)
        return self._sizes

    def run(self) -> dict[str, t.Any]:
        errors: dict[str, str] = {}
        if self.domain is not None:
            doms = [self.client.lookup_domain(self.domain)]
        elif self.domains is not None:
            doms = []
            for name in dict.fromkeys(self.domains):  # in order, without repeats
                try:
                    doms.append(self.client.lookup_domain(name))
                except SnapshotError as exc:
                    errors[str(name)] = exc.msg
        else:
            doms = sorted(self.client.conn.listAllDomains(0), key=lambda d: d.name())
        snapshots: list[dict[str, t.Any]] = []
        domains: dict[str, dict[str, t.Any]] = {}
        for dom in doms:
            try:
                read = self._read(dom)
            except SnapshotError as exc:
                if self.domains is None:
                    raise
                errors[dom.name()] = exc.msg  # one domain that cannot be read does not hide the others
                continue
            if read is None:
                continue
            listed, facts = read
            facts['image_only'] = self._compare_images(dom.name(), listed, facts['disks'])
            self._add_sizes(listed, facts)
            current = next((s['name'] for s in listed if s['current']), None)
            domains[dom.name()] = dict({'current': current, 'tree': snapshot_tree(listed), 'count': len(listed)},
                                       **facts)
            for snap in listed:
                snap['group'] = parse_group(snap['description'])
            snapshots.extend(s for s in listed if self.name is None or s['name'] == self.name)
        result: dict[str, t.Any] = {'changed': False, 'snapshots': snapshots, 'domains': domains,
                                    'libvirt_version': version_text(self.client.libvirt_version)}
        if self.domains is not None:
            result['errors'] = errors
        if self.domain is not None:
            result['current'] = domains[self.domain]['current']
            result['tree'] = domains[self.domain]['tree']
        return result

    def _compare_images(self, domain: str, listed: list[dict[str, t.Any]], disks: list[dict[str, t.Any]]) -> list[str]:
        """Set ``consistent`` on each snapshot: whether the qcow2 images hold what libvirt lists; warn on a
        mismatch. Returns the names the images hold that libvirt does not list."""
        for snap in listed:
            snap['consistent'] = None
        checkable = is_local_uri(self.client.uri) and not any(s['location'] == 'external' for s in listed)
        files = [d['file'] for d in disks if d['type'] == 'file' and d['format'] == 'qcow2' and d['snapshot'] != 'no'
                 and d['file']]
        if not checkable or not files:
            return []
        images: dict[str, list[str] | None] = {}
        for path in files:
            try:
                images[path] = read_snapshot_names(path)
            except Qcow2Error:
                images[path] = None  # not readable here (another owner, gone): nothing can be told
        if all(names is None for names in images.values()):
            return []
        missing, extra = compare_internal(listed, images)
        for snap in listed:
            if snap['location'] == 'internal':
                snap['consistent'] = snap['name'] not in missing
                if snap['name'] in missing:
                    self.client.module.warn(
                        f'Snapshot "{snap["name"]}" of domain "{domain}" is listed by libvirt, but the image(s) '
                        f'{", ".join(missing[snap["name"]])} do not hold it: reverting to it cannot work. It may be '
                        'the work of a name QEMU misread (a " or \\ in a name handed to its monitor); delete the '
                        'record with the domain shut off.')
        if extra:
            self.client.module.warn(
                f'The image(s) of domain "{domain}" hold internal snapshots that libvirt does not list: '
                f'{", ".join(repr(n) for n in extra)}. They take space and no tool of libvirt shows them; remove one '
                'with "qemu-img snapshot -d NAME IMAGE" with the domain shut off.')
        return extra

    def _add_sizes(self, listed: list[dict[str, t.Any]], facts: dict[str, t.Any]) -> None:
        """Set the size keys of each snapshot, and the domain's snapshot_bytes and storage."""
        images = [d['file'] for d in facts['disks'] if d['type'] == 'file' and d['format'] == 'qcow2'
                  and d['snapshot'] != 'no' and d['file']]
        held: dict[str, int] = {}
        for snap in listed:
            sizes, files = snapshot_sizes(snap, images, self.sizes)
            snap.update(sizes)
            for path, size in files.items():
                held[path] = held.get(path, 0) + size
        facts['snapshot_bytes'] = sum(s['size_bytes'] for s in listed if s['size_bytes'] is not None)
        facts['storage'] = storage_summary(domain_files(facts['disks'], listed), held, self.sizes)

    def _read(self, dom: t.Any) -> tuple[list[dict[str, t.Any]], dict[str, t.Any]] | None:
        """The snapshots and the facts of ``dom``; None when the domain went away while all domains are read."""
        with libvirt_errors(f'Reading the snapshots of domain "{dom.name()}"', domain=dom.name()):
            try:
                return list_snapshots(dom), self._facts(dom)
            except LibvirtError as exc:
                if self.domain is None and self.domains is None and error_code(exc) == ERR_NO_DOMAIN:
                    return None  # undefined since it was listed: it has no snapshots to show
                raise

    def _facts(self, dom: t.Any) -> dict[str, t.Any]:
        """What a preflight needs to know of the domain itself, read through libvirt only."""
        local = is_local_uri(self.client.uri)
        disks = []
        state = domain_state(dom)
        busy = state in ('running', 'paused') and domain_busy(dom)
        for disk in domain_disks(dom):
            path = disk['file'] if disk['type'] == 'file' else None
            capacity, allocation = self.sizes.block_info(dom, disk, busy)
            disks.append({
                'name': disk['name'], 'type': disk['type'], 'format': disk['format'], 'file': disk['file'],
                'snapshot': disk['snapshot'],
                'free_bytes': free_bytes(path) if local and path else None,
                'allocation_bytes': allocation,
                'capacity_bytes': capacity,
            })
        return {
            'state': state,
            'memory_mib': dom.info()[2] // 1024,
            'agent_channel': has_agent_channel(dom),
            'disks': disks,
        }


def main() -> None:
    argument_spec = dict(
        domain={'type': 'str'},
        domains={'type': 'list', 'elements': 'str'},
        name={'type': 'str'},
    )
    client = AnsibleLibvirtModule(argument_spec, supports_check_mode=True, mutually_exclusive=[('domain', 'domains')])
    try:
        result = SnapshotInfo(client).run()
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(**result)


if __name__ == '__main__':
    main()
