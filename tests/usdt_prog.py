"""The USDT test program (host and VM tests): its C source, how to build it, what it prints.

``prog N [wait]`` runs N rounds; each round fires

* ``kpt:sizes``  (u8 200+i, s16 -300-i, s32 -70000-i, u64 0x0123456789abcdef+i) — registers;
* ``kpt:places`` (a string "msg-i" on the stack, the constant 5, the global g_counter -8-i,
  g_table[i & 3] through base+index*8, the volatile global g_vol -123456 through %rip);
* ``kpt:frame``  (-1000-i, (short)(40+i), g_counter) — memory off(%rbp), built -O0;
* ``kpt:gated``  (i) only when its semaphore ``kpt_gated_semaphore`` is non-zero (a
  second translation unit with ``_SDT_HAS_SEMAPHORES``, the way ``dtrace -G`` does it),

then prints ``semaphore=S gated=G``.  With ``wait`` it first prints ``ready`` and
waits for a line on stdin (for ``-p PID``), and at the end waits for another line (or
the end of stdin) and prints ``semaphore=S`` again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

MAIN = r"""
#include <sys/sdt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern volatile unsigned short kpt_gated_semaphore;
void fire_gated(int i);
int32_t g_counter = -7;
volatile int32_t g_vol = -123456;
int64_t g_table[4] = {11, -22, 33, -44};

static void __attribute__((noinline)) sizes(int i) {
    uint8_t u8 = (uint8_t)(200 + i);
    int16_t s16 = (int16_t)(-300 - i);
    int32_t s32 = -70000 - i;
    uint64_t u64 = 0x0123456789abcdefULL + (uint64_t)i;
    DTRACE_PROBE4(kpt, sizes, u8, s16, s32, u64);
}

static void __attribute__((noinline)) places(int i) {
    char msg[16];
    snprintf(msg, sizeof msg, "msg-%d", i);
    g_counter -= 1;
    DTRACE_PROBE5(kpt, places, msg, 5, g_counter, g_table[i & 3], g_vol);
}

static void __attribute__((noinline, optimize("O0"))) frame(int i) {
    long a = -1000 - i;
    short b = (short)(40 + i);
    DTRACE_PROBE3(kpt, frame, a, b, g_counter);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    int gated = 0;
    if (argc > 2) {
        char line[16];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 3;
    }
    for (int i = 0; i < n; i++) {
        sizes(i);
        places(i);
        frame(i);
        if (__builtin_expect(kpt_gated_semaphore, 0)) {
            gated++;
            fire_gated(i);
        }
    }
    printf("semaphore=%u gated=%d\n", (unsigned)kpt_gated_semaphore, gated);
    if (argc > 2) {
        char line[16];
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) line[0] = 0;
        printf("semaphore=%u\n", (unsigned)kpt_gated_semaphore);
    }
    return 0;
}
"""

GATED = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
volatile unsigned short kpt_gated_semaphore __attribute__((unused)) __attribute__((section(".probes")));
void __attribute__((noinline)) fire_gated(int i) { DTRACE_PROBE1(kpt, gated, i); }
"""


def missing() -> str:
    """Why the program cannot be built here ('' when it can)."""
    if shutil.which("gcc") is None:
        return "gcc is needed to build the USDT test program"
    probe = subprocess.run(["gcc", "-E", "-x", "c", "-"], input="#include <sys/sdt.h>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "<sys/sdt.h> is missing (apt-get install systemtap-sdt-dev)"
    return ""


def build(directory: str) -> str:
    """Compile the program into ``directory``; returns its path."""
    main, gated, out = (os.path.join(directory, n) for n in ("main.c", "gated.c", "usdtprog"))
    with open(main, "w") as f:
        f.write(MAIN)
    with open(gated, "w") as f:
        f.write(GATED)
    subprocess.run(["gcc", "-O2", "-o", out, main, gated], check=True)
    return out


def expected_rounds(n: int) -> List[dict]:
    """What each round's probes carry (signed values as the program computes them)."""
    out = []
    for i in range(n):
        out.append({
            "sizes": (200 + i, -300 - i, -70000 - i, 0x0123456789ABCDEF + i),
            "places": (f"msg-{i}", 5, -8 - i, [11, -22, 33, -44][i & 3], -123456),
            "frame": (-1000 - i, 40 + i, -8 - i),
            "gated": (i,),
        })
    return out
