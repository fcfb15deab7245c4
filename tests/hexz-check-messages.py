#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Find user-visible messages that escaped gettext.

Scans C files for calls that build a GError or print to standard error and
reports each whose message argument starts with a bare string literal
instead of _(), C_() or N_(). A literal is accepted when it contains no
words once the printf conversions are removed ("%s\\n"), when it is only
the tool name as a prefix ("hexz-snap: %s\\n"), or when a comment inside
the call, or alone on the line above it, contains "not translated"
(protocol strings, QMP command names, messages meant for developers).

It also reports translatable strings built with GLib's format macros
(G_GUINT64_FORMAT and the like): xgettext cannot expand them, so it
extracts a message cut off at the macro, which never matches at run time.
PRIu64 and the other <inttypes.h> macros work, and so does %zu.

Usage: hexz-check-messages.py FILE...
Prints one line per finding (FILE:LINE: function: literal) and exits with
status 1 if there is any.
"""

import re
import sys

# Function name -> index of the message argument (0-based).
MESSAGE_ARGUMENTS = {
    "g_set_error": 3,
    "g_set_error_literal": 3,
    "g_task_return_new_error": 3,
    "g_error_new": 2,
    "g_error_new_literal": 2,
    "g_prefix_error": 1,
    "g_prefix_error_literal": 1,
    "g_propagate_prefixed_error": 2,
    "g_printerr": 0,
    "nbdkit_error": 0,
    "hexz_tool_usage_error": 1,
}

CONVERSION = re.compile(r"%(?:\d+\$)?[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?"
                        r"(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspn%]"
                        r"|%\"\s*G_\w+\s*\"")
# Gettext call -> indexes of its message arguments.
GETTEXT_CALLS = {"_": (0,), "N_": (0,), "C_": (1,), "NC_": (1,),
                 "g_dngettext": (1, 2), "ngettext": (0, 1)}
GLIB_FORMAT_MACRO = re.compile(r'"\s*(G_\w+_(?:FORMAT|MODIFIER))\b')
TOOL_PREFIX = re.compile(r"^hexz-snap(?: \w+)?: ")
NOT_TRANSLATED = "not translated"


def strip_comments_and_strings(source):
    """Return a copy of source with comments blanked and string contents
    kept, plus the comment text of each line, so that call parsing need not
    care about parentheses inside comments."""
    code = []
    comments = {}
    i = 0
    line = 1
    length = len(source)
    while i < length:
        c = source[i]
        if source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = length if end < 0 else end + 2
            text = source[i:end]
            comments.setdefault(line, []).append(text)
            for _ in range(text.count("\n")):
                line += 1
                comments.setdefault(line, []).append(text)
            code.append(re.sub(r"[^\n]", " ", text))
            i = end
        elif source.startswith("//", i):
            end = source.find("\n", i)
            end = length if end < 0 else end
            comments.setdefault(line, []).append(source[i:end])
            code.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < length and source[j] != c:
                j += 2 if source[j] == "\\" else 1
            code.append(source[i:j + 1])
            line += source[i:j + 1].count("\n")
            i = j + 1
        else:
            if c == "\n":
                line += 1
            code.append(c)
            i += 1
    return "".join(code), comments


def split_arguments(code, start):
    """Split the argument list that starts after the '(' at code[start - 1].
    Returns the list of argument texts."""
    depth = 0
    arguments = []
    current = start
    i = start
    while i < len(code):
        c = code[i]
        if c in "\"'":
            j = i + 1
            while j < len(code) and code[j] != c:
                j += 2 if code[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                arguments.append(code[current:i])
                return arguments
            depth -= 1
        elif c == "," and depth == 0:
            arguments.append(code[current:i])
            current = i + 1
        i += 1
    return arguments


def literal_text(argument):
    """The concatenated contents of the string literals at the start of
    argument, or None when it does not start with a literal."""
    argument = argument.strip()
    if not argument.startswith('"'):
        return None
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', argument))


def is_acceptable_literal(text):
    without_conversions = CONVERSION.sub("", text)
    without_conversions = TOOL_PREFIX.sub("", without_conversions)
    without_escapes = re.sub(r"\\.", "", without_conversions)
    return re.search(r"[A-Za-z]{2,}", without_escapes) is None


def is_marked_untranslated(code, comments, start, end):
    """Return whether a "not translated" comment is inside the call that
    spans code[start:end], or alone on the line above it."""
    first_line = code.count("\n", 0, start) + 1
    last_line = first_line + code.count("\n", start, end)
    lines = list(range(first_line, last_line + 1))
    code_lines = code.split("\n")
    if first_line >= 2 and not code_lines[first_line - 2].strip():
        lines.append(first_line - 1)
    return any(NOT_TRANSLATED in comment
               for line in lines for comment in comments.get(line, []))


def check_file(path):
    with open(path, encoding="utf-8") as file:
        source = file.read()
    code, comments = strip_comments_and_strings(source)
    findings = []
    pattern = re.compile(r"\b(%s)\s*\(" % "|".join(MESSAGE_ARGUMENTS))
    for match in pattern.finditer(code):
        function = match.group(1)
        line = code.count("\n", 0, match.start()) + 1
        arguments = split_arguments(code, match.end())
        index = MESSAGE_ARGUMENTS[function]
        if index >= len(arguments):
            continue
        argument = arguments[index].strip()
        text = literal_text(argument)
        if text is None or is_acceptable_literal(text):
            continue
        if is_marked_untranslated(code, comments, match.start(), match.end() + len(",".join(arguments))):
            continue
        findings.append(f"{path}:{line}: {function}: \"{text}\" is not wrapped in _()")

    gettext_pattern = re.compile(r"(?<![\w.])(%s)\s*\(" % "|".join(GETTEXT_CALLS))
    for match in gettext_pattern.finditer(code):
        arguments = split_arguments(code, match.end())
        messages = [arguments[i] for i in GETTEXT_CALLS[match.group(1)] if i < len(arguments)]
        macros = [GLIB_FORMAT_MACRO.search(message) for message in messages]
        macros = [macro for macro in macros if macro is not None]
        if not macros:
            continue
        line = code.count("\n", 0, match.start()) + 1
        findings.append(f"{path}:{line}: {macros[0].group(1)} in a translatable string: "
                        "xgettext cannot expand it; use PRIu64 and the like from "
                        "<inttypes.h>, or %zu")
    return findings


def main(paths):
    findings = []
    for path in paths:
        findings.extend(check_file(path))
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
