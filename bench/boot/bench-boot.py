#!/usr/bin/python3
# bench-boot.py: time hexz-snap boot, from a cold disk and from a snapshot
# with memory
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Packs a zero disk, boots the test guest on it with a filled RAM region and
# takes a paused-mode snapshot with hexz-snap snap. Then it boots that
# snapshot several times. It reports the time until the machine runs, as
# hexz-snap boot --json reports it, and the time a Ctrl-C takes to stop it.
#
# Usage: bench-boot.py BUILD [--fill 256M] [--ram 512] [--runs 5] [--accel tcg]

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

STATUS_ADDRESS = 0x00200000
STATE_RUNNING = 3


def qmp_command(sock_path, command, arguments=None):
    """Sends one QMP command on a new connection and returns its result."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(sock_path)
        stream = sock.makefile("rw")
        json.loads(stream.readline())  # greeting
        for name, args in (("qmp_capabilities", None), (command, arguments)):
            message = {"execute": name}
            if args is not None:
                message["arguments"] = args
            stream.write(json.dumps(message) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "event" in reply:
                    continue
                if "error" in reply:
                    raise RuntimeError(f"QMP {name} failed: {reply['error']}")
                break
        return reply["return"]


def guest_state(sock_path):
    """Returns the test guest's state and fill progress from its status area."""
    text = qmp_command(sock_path, "human-monitor-command",
                       {"command-line": f"xp /10wx {STATUS_ADDRESS:#x}"})
    words = []
    for line in text.splitlines():
        words += [int(w, 16) for w in line.split(":", 1)[1].split()]
    return words[2], words[9], words[8]


def start_boot(tool, args, env):
    process = subprocess.Popen([tool, "boot", "--json"] + args, env=env,
                               stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip("\n") == "}":
            break
    if not lines:
        process.wait()
        sys.exit(f"hexz-snap boot failed with status {process.returncode}")
    return process, json.loads("".join(lines))


def stop_boot(process):
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    if process.wait(timeout=120) != 0:
        sys.exit(f"hexz-snap boot exited with status {process.returncode}")
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("build", help="the meson build folder")
    parser.add_argument("--fill", default="256M", help="pattern size in guest RAM")
    parser.add_argument("--ram", default="512", help="guest RAM in MiB")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--accel", default="tcg")
    options = parser.parse_args()

    tool = os.path.join(options.build, "tools", "hexz-snap")
    guest = os.path.join(options.build, "tests", "guest", "hexz-test-guest.elf")
    env = dict(os.environ)
    env["HEXZ_NBDKIT_PLUGIN"] = os.path.join(options.build, "tools", "hexz-plugin.so")

    folder = tempfile.mkdtemp(prefix="hexz-bench-boot-")
    try:
        disk = os.path.join(folder, "disk.img")
        base = os.path.join(folder, "base.hexz")
        checkpoint = os.path.join(folder, "checkpoint.hexz")
        overlay = os.path.join(folder, "base.overlay")
        qmp = os.path.join(folder, "qmp.sock")
        guest_args = ["--kernel", guest, "--append", f"fill={options.fill}",
                      "--accel", options.accel]

        with open(disk, "wb") as f:
            f.truncate(4 << 20)
        subprocess.run([tool, "pack", disk, base], check=True, stdout=subprocess.DEVNULL)

        cold = []
        for _ in range(options.runs):
            process, info = start_boot(tool, [base, "--ram", options.ram] + guest_args, env)
            cold.append(info["seconds"])
            stop_boot(process)

        process, info = start_boot(tool, [base, "--ram", options.ram, "--overlay", overlay,
                                          "--qmp", qmp] + guest_args, env)
        deadline = time.monotonic() + 600
        while True:
            state, done, size = guest_state(qmp)
            if state == STATE_RUNNING:
                break
            if time.monotonic() > deadline:
                sys.exit(f"guest filled {done} of {size} bytes in 600 s")
            time.sleep(0.2)
        subprocess.run([tool, "snap", "--socket", qmp, "--overlay", overlay, "--base", base,
                        "--output", checkpoint, "--mode", "paused"], check=True,
                       stdout=subprocess.DEVNULL)
        stop_boot(process)
        size = os.path.getsize(checkpoint)

        restore = []
        stop = []
        for _ in range(options.runs):
            process, info = start_boot(tool, [checkpoint] + guest_args, env)
            if not info["restored_memory"]:
                sys.exit("the checkpoint booted without its memory")
            restore.append(info["seconds"])
            stop.append(stop_boot(process))

        print(f"guest: fill={options.fill}, {options.ram} MiB RAM, {options.accel}, "
              f"{options.runs} runs; checkpoint {size / 2**20:.1f} MiB")
        print(f"cold boot to running:      median {statistics.median(cold):.3f} s, "
              f"min {min(cold):.3f} s")
        print(f"boot with memory restore:  median {statistics.median(restore):.3f} s, "
              f"min {min(restore):.3f} s")
        print(f"Ctrl-C to exit:            median {statistics.median(stop):.3f} s, "
              f"min {min(stop):.3f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
