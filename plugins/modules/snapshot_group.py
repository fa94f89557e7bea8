#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_group
short_description: Snapshot, revert or delete several libvirt domains as one application
version_added: 0.2.0
description:
  - Takes a snapshot named O(name) of every member (a domain, on one or several hypervisors) at one point, reverts
    them all to it, or deletes it from them all. libvirt has no call for a consistent snapshot of several domains;
    this module coordinates one.
  - "O(state=present): every member is checked first (it exists, the name is valid, the kind of snapshot can be
    made, there is room for it), nothing is made if one fails. Then the file systems of every running member are
    frozen by its guest agent (or every running member is paused), the snapshots are taken, all at once, and every
    member is thawed (resumed). The time from the first freeze to the last thaw is the window, reported overall and
    per member in RV(window_ms) and bounded by O(timeout)."
  - If anything fails inside the window (a freeze, a snapshot, a thaw, the timeout), every member is thawed or
    resumed, the snapshots taken in this attempt are deleted, and the task fails saying which member failed and
    why. A group is never left half taken.
  - The group is recorded in the description of each member's snapshot, as its last line, a marker
    C([kvm.snapshots.group]) followed by one line of JSON with the group's name, a group id (new for every group
    taken) and its members (domain, URI without password, power state when taken).
    M(kvm.snapshots.snapshot_info) shows it as C(group) of each snapshot.
  - O(state=reverted) reverts every member to the group snapshot and brings it back to the power state it had when
    the group was taken, after a safety snapshot of every member; O(state=absent) deletes the group snapshot from
    every member.
author:
  - kvm.snapshots contributors (@kvm-snapshots)
extends_documentation_fragment:
  - kvm.snapshots._libvirt
  - kvm.snapshots._libvirt.jobs
  - kvm.snapshots._libvirt.attributes
  - kvm.snapshots._attributes
attributes:
  check_mode:
    support: full
    details: Checks every member as a real run does and reports what would be made, reverted or deleted; nothing
      is frozen, paused or changed.
  diff_mode:
    support: full
  idempotent:
    support: partial
    details:
      - O(state=present) when every member has the group snapshot (one group id) changes nothing; when only some
        have a snapshot of that name, or they are not one group, the task fails and changes nothing.
      - O(state=absent) when no member has it changes nothing.
      - O(state=reverted) reverts every time and reports C(changed=true), as M(kvm.snapshots.snapshot_revert) does.
options:
  name:
    description:
      - The snapshot name, the same on every member. The rules of M(kvm.snapshots.snapshot) apply.
    type: str
    required: true
  members:
    description:
      - The domains of the group, each with its hypervisor.
      - Required for O(state=present) and O(state=reverted). For O(state=absent), left out, the members are read
        from the marker of the group snapshot of a domain on O(uri).
    type: list
    elements: dict
    suboptions:
      domain:
        description: The libvirt name of the domain.
        type: str
        required: true
      uri:
        description:
          - The libvirt URI of its hypervisor; left out, O(uri). One connection is opened per URI.
          - A password in it is masked in every message and result, and never recorded in the marker.
        type: str
  state:
    description:
      - V(present) takes the group snapshot; V(absent) deletes it from every member; V(reverted) reverts every member
        to it.
    type: str
    choices: [present, absent, reverted]
    default: present
  freeze:
    description:
      - How running members are held still during the window.
      - V(agent) freezes their file systems through qemu-guest-agent (C(guest-fsfreeze-freeze)) and takes
        disk-only (external) snapshots, so that every file system is as after a clean sync and the guests keep
        running; a later revert boots the members from their disks. Where a running member has no agent channel
        or its agent does not answer C(guest-info) or has C(guest-fsfreeze-freeze) or C(guest-fsfreeze-thaw)
        disabled (qemu-ga's C(--block-rpcs)), and with O(location=auto) where a running member cannot take a
        disk-only snapshot (it has internal snapshots, or a disk that is not a file) or a hypervisor's libvirt is
        older than 9.9 (it cannot revert external snapshots), every member is paused instead, with a warning and
        RV(freeze_used=pause). An agent that can freeze but fails to fails the task, after the undo.
      - V(pause) pauses every running member (its vCPUs stop) and takes snapshots with memory, of the kind
        O(location) chooses, so a revert brings the members back running exactly at the cut. The window lasts
        as long as the slowest member takes to write its memory (about a second per GiB used).
      - Members that are shut off (or paused already) are not touched; their snapshot is taken in the window too.
    type: str
    choices: [agent, pause]
    default: agent
  timeout:
    description:
      - Seconds the window may last, from the first freeze or pause to the last thaw or resume.
      - Past it the members are thawed or resumed at once, the snapshots are deleted when they are done, and the
        task fails.
    type: int
    default: 30
  location:
    description:
      - The kind of each member's snapshot, decided per member as M(kvm.snapshots.snapshot) does (see its
        O(kvm.snapshots.snapshot#module:location)).
      - With O(freeze=agent) a running member gets a disk-only snapshot, which is always external; V(internal) is
        then refused for it before anything is made (an internal snapshot of a running domain always holds its
        memory, and that memory would hold frozen file systems). Use O(freeze=pause) for internal snapshots.
    type: str
    choices: [auto, internal, external]
    default: auto
  description:
    description:
      - Free text stored with each member's snapshot, before the group marker line.
    type: str
  order:
    description:
      - For O(state=reverted), the domains to revert and start first, in this order (a database before the
        application servers); the other members follow in the order of O(members).
    type: list
    elements: str
    default: []
  safety_snapshot:
    description:
      - For O(state=reverted), first take a snapshot of every member's present state, named
        C(<name>-safety-<UTC time>) (and marked as a group of its own), before any member is reverted.
    type: bool
    default: true
  failure_policy:
    description:
      - For O(state=reverted), what happens when a member cannot be reverted.
      - V(all_or_none) puts the members already reverted back to their safety snapshots and reverts no other (needs
        O(safety_snapshot=true)).
      - V(best_effort) still reverts the others.
      - Either way the task fails and RV(members) says where each member stands.
    type: str
    choices: [all_or_none, best_effort]
    default: all_or_none
notes:
  - The members are frozen, snapshotted and thawed in parallel, one thread per member, over one connection per URI.
  - O(hypervisor_jobs) counts each member's job against that member's hypervisor (of its own O(members[].uri)). The
    slots of a group snapshot are taken all at once, before the first freeze, as many of each hypervisor as it has
    members (at most O(hypervisor_jobs)); with fewer slots than members on a hypervisor, their snapshots take turns
    inside the window, which then lasts longer. A revert or a delete holds one slot for each member's job.
  - If the module's process dies inside the window (killed, out of memory, its process group signalled), a release
    guard it forked when it started (a copy of itself in a session of its own, named C(kvmsnap-guard)) waits for
    the snapshots libvirt is taking and then thaws or resumes every member, and logs that to syslog. A group that only some members hold
    afterwards is refused by the next run; delete it with O(state=absent).
  - A disk-only snapshot taken with O(freeze=agent) is consistent at the file-system level in every member, as
    after a sync, but holds no memory; applications that keep state only in memory should use O(freeze=pause).
  - Reverting external snapshots needs libvirt 9.9 or later on that member's hypervisor; an older one is named
    before anything is changed.
seealso:
  - module: kvm.snapshots.snapshot
  - module: kvm.snapshots.snapshot_revert
  - module: kvm.snapshots.snapshot_info
'''

EXAMPLES = r'''
- name: Snapshot the database and its two application servers at one point
  kvm.snapshots.snapshot_group:
    name: pre-upgrade
    members:
      - domain: db1
        uri: qemu+ssh://root@hv1.example.com/system
      - domain: app1
        uri: qemu+ssh://root@hv2.example.com/system
      - domain: app2
        uri: qemu+ssh://root@hv2.example.com/system
    description: Before the upgrade of OPS-1234
  register: group

- name: Show the window achieved
  ansible.builtin.debug:
    msg: "{{ group.freeze_used }} for {{ group.window_ms }} ms"

- name: Roll the application back, the database first
  kvm.snapshots.snapshot_group:
    name: pre-upgrade
    state: reverted
    members:
      - {domain: db1, uri: 'qemu+ssh://root@hv1.example.com/system'}
      - {domain: app1, uri: 'qemu+ssh://root@hv2.example.com/system'}
      - {domain: app2, uri: 'qemu+ssh://root@hv2.example.com/system'}
    order: [db1]

- name: Delete the group snapshot from every member (read from the marker on hv1)
  kvm.snapshots.snapshot_group:
    uri: qemu+ssh://root@hv1.example.com/system
    name: pre-upgrade
    state: absent
'''

RETURN = r'''
name:
  description: The group snapshot's name.
  returned: always
  type: str
  sample: pre-upgrade
window_ms:
  description:
    - Milliseconds from the first freeze or pause to the last thaw or resume (O(state=present), when snapshots were
      taken); with no running member, from the first snapshot to the last. V(0) otherwise.
  returned: always
  type: int
  sample: 184
freeze_used:
  description: How the running members were held still, V(agent), V(pause), or V(none) (no member was running, or
    nothing was taken).
  returned: always
  type: str
  sample: agent
members:
  description: Each member and where it stands, in the order of O(members).
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
      returned: always
      sample: db1
    uri:
      description: Its URI, without password.
      type: str
      returned: always
      sample: qemu+ssh://root@hv1.example.com/system
    snapshot:
      description: The group snapshot's name.
      type: str
      returned: always
      sample: pre-upgrade
    status:
      description:
        - V(taken) (now, or would be in check mode), V(exists) (already, as this group), V(deleted), V(absent) (not
          there, or deleted again by the undo), V(reverted), V(restored) (reverted, then put back to its safety
          snapshot because another member failed), V(failed), V(untouched).
      type: str
      returned: always
      sample: taken
    window_ms:
      description: Milliseconds this member was frozen or paused; V(0) when it was not.
      type: int
      returned: always
      sample: 171
    state_before:
      description: Its power state before the task (V(null) when the domain does not exist).
      type: str
      returned: always
      sample: running
    state_after:
      description: Its power state after the task (in check mode, the one expected).
      type: str
      returned: always
      sample: running
    safety_snapshot:
      description: The name of its safety snapshot (O(state=reverted)); V(null) when none was taken.
      type: str
      returned: always
      sample: pre-upgrade-safety-20261130T081500Z
    error:
      description: What went wrong for this member; V(null) when nothing did.
      type: str
      returned: always
      sample: null
    kind:
      description: The kind of snapshot taken (or that would be), V(null) when none is taken.
      type: dict
      returned: always
      sample: {location: external, memory: 'no'}
'''

from ansible_collections.kvm.snapshots.plugins.module_utils._group import (
    GROUP_ARGUMENT_SPEC,
    GROUP_MODULE_KWARGS,
    GroupManager,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
)


def main() -> None:
    client = AnsibleLibvirtModule(dict(GROUP_ARGUMENT_SPEC), (JOBS_OPTIONS,), supports_check_mode=True,
                                  **GROUP_MODULE_KWARGS)
    manager = None
    try:
        manager = GroupManager(client)
        result = manager.run()
    except (SnapshotError, LibvirtError) as exc:
        if manager is not None:
            for warning in manager.warnings:
                client.module.warn(warning)
        client.fail(exc)
    for warning in result.pop('warnings', []):
        client.module.warn(warning)
    client.exit(**result)


if __name__ == '__main__':
    main()
