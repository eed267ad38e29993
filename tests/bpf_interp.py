"""A small eBPF interpreter for tests: runs generated programs against fake kernels.

It executes :class:`kprobes.bpf.asm.Program` instructions (ISA v1-v3 ALU/JMP,
loads/stores, ``ld_imm64`` and map references) with a fake context, fake maps
(one CPU) and the helpers the BPF engine's code generator calls.  Addresses
are plain ints in separate regions (stack, context, map values, "kernel
memory" given by the test); touching anything else raises, as the verifier or
the kernel would refuse it.
"""

from __future__ import annotations

from typing import Callable, Dict, Hashable, List, Optional, Tuple

from kprobes.bpf import insn as I
from kprobes.bpf.asm import Program
from kprobes.bpf.helpers import Helper
from kprobes.bpf.maps import MapType

M64 = (1 << 64) - 1
STACK_TOP = 0x1000_0000
CTX = 0x2000_0000
VALUES = 0x3000_0000
MAP_HANDLE = 0x4000_0000


def s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


class FakeMap:
    def __init__(self, spec: object) -> None:
        self.spec = spec
        self.type = spec.type  # type: ignore[attr-defined]
        self.key_size = spec.key_size  # type: ignore[attr-defined]
        self.value_size = spec.value_size  # type: ignore[attr-defined]
        self.data: Dict[bytes, bytearray] = {}
        if self.type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            for i in range(spec.max_entries):  # type: ignore[attr-defined]
                self.data[i.to_bytes(4, "little")] = bytearray(self.value_size)


class Machine:
    """Fake kernel state shared by program runs (maps persist between runs)."""

    def __init__(self, *, pid: int = 1000, tid: int = 1001, uid: int = 0, gid: int = 0,
                 comm: bytes = b"work", ns: int = 5_000_000_000, cookie: int = 0) -> None:
        self.maps: Dict[Hashable, FakeMap] = {}
        self.regions: List[Tuple[int, bytearray]] = []
        self.value_addr: Dict[Tuple[int, bytes], int] = {}
        self.kmem: Dict[int, bytes] = {}
        self.records: List[bytes] = []
        self.pid, self.tid, self.uid, self.gid, self.comm, self.ns = pid, tid, uid, gid, comm, ns
        self.cookie = cookie
        self._next = VALUES
        #: what bpf_get_stackid walks: kernel and user instruction pointers
        self.kstack: List[int] = []
        self.ustack: List[int] = []
        self.task, self.cgroup, self.rand = 0xFFFF888000123400, 4242, 0xDEADBEEF
        self.numa = 1
        #: what bpf_send_signal and bpf_override_return were called with
        self.signals: List[int] = []
        self.overrides: List[int] = []

    # -- memory ---------------------------------------------------------------------
    def region(self, addr: int, size: int) -> Tuple[bytearray, int]:
        for base, buf in self.regions:
            if base <= addr and addr + size <= base + len(buf):
                return buf, addr - base
        raise AssertionError(f"access of {size} bytes at {addr:#x} outside any region")

    def read(self, addr: int, size: int) -> bytes:
        buf, off = self.region(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self.region(addr, len(data))
        buf[off:off + len(data)] = data

    def map_of(self, handle: int) -> FakeMap:
        refs = list(self.maps)
        idx = (handle - MAP_HANDLE) // 16
        assert handle >= MAP_HANDLE and idx < len(refs), f"{handle:#x} is no map"
        return self.maps[refs[idx]]

    def handle(self, ref: Hashable) -> int:
        self.maps.setdefault(ref, FakeMap(ref))
        return MAP_HANDLE + 16 * list(self.maps).index(ref)

    def value_ptr(self, m: FakeMap, key: bytes) -> int:
        val = m.data[key]
        k = (id(m), key)
        if k not in self.value_addr or not any(buf is val for _, buf in self.regions):
            self.value_addr[k] = self._next
            self.regions.append((self._next, val))
            self._next += 0x10000
        return self.value_addr[k]

    def user_read(self, addr: int, size: int, string: bool) -> Optional[bytes]:
        for base, data in self.kmem.items():
            if base <= addr < base + len(data):
                chunk = data[addr - base:addr - base + size]
                if string:
                    chunk = chunk.split(b"\0", 1)[0][: size - 1] + b"\0"
                return chunk
        return None

    # -- helpers ------------------------------------------------------------------------
    def helper(self, hid: int, r: List[int]) -> int:  # noqa: C901 - one table
        H = Helper
        if hid == H.map_lookup_elem:
            m = self.map_of(r[1])
            key = self.read(r[2], m.key_size)
            return self.value_ptr(m, key) if key in m.data else 0
        if hid == H.map_update_elem:
            m = self.map_of(r[1])
            key = self.read(r[2], m.key_size)
            if r[4] == 1 and key in m.data:
                return (-17) & M64
            if key in m.data:
                m.data[key][:] = self.read(r[3], m.value_size)
            else:
                m.data[key] = bytearray(self.read(r[3], m.value_size))
            return 0
        if hid == H.map_delete_elem:
            m = self.map_of(r[1])
            key = self.read(r[2], m.key_size)
            return 0 if m.data.pop(key, None) is not None else (-2) & M64
        if hid == H.get_current_pid_tgid:
            return (self.pid << 32) | self.tid
        if hid == H.get_current_uid_gid:
            return (self.gid << 32) | self.uid
        if hid == H.ktime_get_ns:
            return self.ns
        if hid == H.get_smp_processor_id:
            return 0
        if hid == H.get_current_comm:
            data = self.comm[: r[2] - 1]
            self.write(r[1], data + bytes(r[2] - len(data)))
            return 0
        if hid == H.get_attach_cookie:
            return self.cookie
        if hid == H.get_stackid:  # r1 ctx, r2 map, r3 flags (BPF_F_USER_STACK: 1 << 8)
            m = self.map_of(r[2])
            assert m.type == MapType.STACK_TRACE and r[3] & ~(1 << 8) == 0
            ips = self.ustack if r[3] & (1 << 8) else self.kstack
            if not ips:
                return (-14) & M64  # -EFAULT: no stack
            depth = m.value_size // 8
            value = b"".join(ip.to_bytes(8, "little") for ip in ips[:depth])
            value += bytes(m.value_size - len(value))
            for key, old in m.data.items():
                if bytes(old) == value:
                    return int.from_bytes(key, "little")
            sid = len(m.data) + 1
            m.data[sid.to_bytes(4, "little")] = bytearray(value)
            return sid
        if hid == H.get_current_task:
            return self.task
        if hid == H.get_current_cgroup_id:
            return self.cgroup
        if hid == H.get_prandom_u32:
            return self.rand
        if hid == H.get_numa_node_id:
            return self.numa
        if hid == H.send_signal:
            self.signals.append(r[1])
            return 0
        if hid == H.override_return:
            assert r[1] == CTX, "override_return takes the context"
            self.overrides.append(r[2])
            return 0
        if hid in (H.probe_read_kernel, H.probe_read_user, H.probe_read,
                   H.probe_read_kernel_str, H.probe_read_user_str, H.probe_read_str):
            string = hid in (H.probe_read_kernel_str, H.probe_read_user_str, H.probe_read_str)
            try:
                data: Optional[bytes] = self.read(r[3], r[2])
                if string and data is not None:
                    data = data.split(b"\0", 1)[0][: r[2] - 1] + b"\0"
            except AssertionError:
                data = self.user_read(r[3], r[2], string)
            if data is None:
                self.write(r[1], bytes(r[2]) if not string else b"\0")
                return (-14) & M64
            self.write(r[1], data)
            return len(data) if string else 0
        if hid == H.ringbuf_output:
            self.records.append(self.read(r[2], r[3]))
            return 0
        if hid == H.perf_event_output:
            self.records.append(self.read(r[4], r[5]))
            return 0
        raise AssertionError(f"helper {hid} not faked")

    # -- running ------------------------------------------------------------------------
    def run(self, prog: Program, ctx: bytes, *, limit: int = 100_000) -> int:  # noqa: C901
        stack = bytearray(512)
        ctxbuf = bytearray(ctx)
        self.regions = [r for r in self.regions if r[0] >= VALUES]
        self.regions += [(STACK_TOP - 512, stack), (CTX, ctxbuf)]
        relocs = {rl.at: rl.ref for rl in prog.relocs}
        insns = prog.insns
        # slot -> index
        index_of: Dict[int, int] = {}
        pc = 0
        for i, ins in enumerate(insns):
            index_of[pc] = i
            pc += ins.slots
        slot_of = {i: s for s, i in index_of.items()}
        reg = [0] * 11
        reg[1] = CTX
        reg[10] = STACK_TOP
        i = 0
        steps = 0
        while True:
            steps += 1
            assert steps < limit, "program does not terminate"
            ins = insns[i]
            code, dst, src, off, imm = ins
            cls = code & 7
            nxt = i + 1
            if code == I.LD_IMM64:
                reg[dst] = self.handle(relocs[i]) if i in relocs else imm & M64
            elif cls in (I.ALU64, I.ALU):
                op = code & 0xF0
                x = reg[src] if code & I.X else imm & M64
                a = reg[dst]
                if cls == I.ALU:
                    a &= 0xFFFFFFFF
                    x &= 0xFFFFFFFF
                bits = 64 if cls == I.ALU64 else 32
                mask = (1 << bits) - 1
                if op == I.ADD:
                    v = a + x
                elif op == I.SUB:
                    v = a - x
                elif op == I.MUL:
                    v = a * x
                elif op == I.DIV:
                    v = a // x if x & mask else 0
                elif op == I.MOD:
                    v = a % x if x & mask else a
                elif op == I.OR:
                    v = a | x
                elif op == I.AND:
                    v = a & x
                elif op == I.XOR:
                    v = a ^ x
                elif op == I.LSH:
                    v = a << (x & (bits - 1))
                elif op == I.RSH:
                    v = (a & mask) >> (x & (bits - 1))
                elif op == I.ARSH:
                    sa = a & mask
                    sa = sa - (1 << bits) if sa >> (bits - 1) else sa
                    v = sa >> (x & (bits - 1))
                elif op == I.NEG:
                    v = -a
                elif op == I.MOV:
                    v = x
                elif op == I.END:  # imm: 16/32/64 bits; to_be swaps on this little-endian machine
                    nb = imm // 8
                    low = reg[dst] & ((1 << imm) - 1)
                    v = int.from_bytes(low.to_bytes(nb, "little"), "big") if code & 0x08 else low
                    bits, mask = 64, M64
                else:
                    raise AssertionError(f"ALU op {op:#x} not interpreted")
                reg[dst] = v & mask
            elif cls in (I.JMP, I.JMP32):
                op = code & 0xF0
                if op == I.EXIT:
                    return reg[0]
                if op == I.CALL:
                    reg[0] = self.helper(imm, reg) & M64
                    for k in range(1, 6):
                        reg[k] = 0xDEAD  # clobbered
                else:
                    x = reg[src] if code & I.X else imm & M64
                    a = reg[dst]
                    if cls == I.JMP32:
                        a, x = a & 0xFFFFFFFF, x & 0xFFFFFFFF
                        sa = a - (1 << 32) if a >> 31 else a
                        sx = x - (1 << 32) if x >> 31 else x
                    else:
                        sa, sx = s64(a), s64(x)
                    taken = {
                        I.JA: True, I.JEQ: a == x, I.JNE: a != x, I.JGT: a > x, I.JGE: a >= x,
                        I.JLT: a < x, I.JLE: a <= x, I.JSET: bool(a & x), I.JSGT: sa > sx,
                        I.JSGE: sa >= sx, I.JSLT: sa < sx, I.JSLE: sa <= sx,
                    }[op]
                    if taken:
                        nxt = index_of[slot_of[i] + 1 + off]
            elif cls == I.LDX:
                size = I.SIZE_BYTES[code & 0x18]
                reg[dst] = int.from_bytes(self.read(reg[src] + off, size), "little")
            elif cls == I.STX:
                size = I.SIZE_BYTES[code & 0x18]
                assert code & 0xE0 == I.MEM, "atomics not interpreted"
                self.write(reg[dst] + off, (reg[src] & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            elif cls == I.ST:
                size = I.SIZE_BYTES[code & 0x18]
                self.write(reg[dst] + off, (imm & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            else:
                raise AssertionError(f"instruction class {cls} not interpreted")
            i = nxt

    def map_named(self, name: str) -> FakeMap:
        for ref, m in self.maps.items():
            if getattr(ref, "label", None) == name:
                return m
        raise KeyError(name)


def pt_regs(**regs: int) -> bytes:
    """An x86_64 ``struct pt_regs`` with the given registers (di=..., ax=...)."""
    from kprobes.engines.bpf.codegen import PT_REGS

    buf = bytearray(168)
    for name, v in regs.items():
        off = PT_REGS["x86_64"][name]
        buf[off:off + 8] = (v & M64).to_bytes(8, "little")
    return bytes(buf)


Runner = Callable[[bytes], int]
