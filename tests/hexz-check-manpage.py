#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Check that the manual page lists a command's options as --help does.

    hexz-check-manpage.py MAN_PAGE COMMAND HELP_OUTPUT

The command's entry under COMMANDS must name every long option that
`hexz-snap COMMAND --help` shows and no other. An entry stating that it
accepts "the compression options" also takes those listed under
COMPRESSION OPTIONS. Exits with status 1 and one line per difference.
"""

import re
import sys


def long_options(section):
    """The long options that start a .B or .BI line of a man page section."""
    return set(re.findall(r'^\.BI? "?(?:-\w, )?(--[a-z][a-z-]*)', section, re.M))


def section_after(text, heading):
    """The text after a .SH heading, up to the next one."""
    return text.split(f".SH {heading}", 1)[1].split("\n.SH ", 1)[0]


def main():
    man_path, command, help_path = sys.argv[1:]
    with open(man_path, encoding="utf-8") as man_file:
        text = man_file.read().replace("\\-", "-")

    # A command's entry starts with ".TP" and a ".B COMMAND" or
    # '.BI "COMMAND ..."' line, and ends where the next one starts.
    parts = re.split(r'^\.TP\n\.BI? "?([a-z]+)\b', section_after(text, "COMMANDS"), flags=re.M)
    entries = {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}
    if command not in entries:
        print(f"{man_path} has no entry for {command}")
        return 1

    entry = entries[command]
    # "the compression options except --a and --b, and:" names options
    # the command does not take.
    excepted = re.search(r"compression options\s+except(.*?)\band:", entry, re.S)
    if excepted:
        entry = entry.replace(excepted.group(1), " ")
    listed = long_options(entry)
    if "compression options" in entry:
        listed |= long_options(section_after(text, "COMPRESSION OPTIONS"))
    if excepted:
        listed -= set(re.findall(r"--[a-z][a-z-]*", excepted.group(1)))

    with open(help_path, encoding="utf-8") as help_file:
        help_options = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", help_file.read(), re.M))
    help_options.discard("--help")

    for option in sorted(help_options - listed):
        print(f"{command} {option}: shown by --help, missing from the manual page")
    for option in sorted(listed - help_options):
        print(f"{command} {option}: in the manual page, not shown by --help")
    return 0 if help_options == listed else 1


if __name__ == "__main__":
    sys.exit(main())
