#!/usr/bin/env python3
"""Turns a terminal screen captured with ANSI colours (tmux capture-pane -e)
into an HTML page that looks like the terminal, for a headless browser to
screenshot. Only SGR sequences are read: the 16 colours, 256-colour and RGB
forms, bold, dim, reverse."""
import html
import re
import sys

PALETTE = [
    "#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
]
FG, BG = "#d4d4d4", "#1e1e1e"


def colour256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (v, v, v)


def apply(state, params):
    codes = [int(p) if p else 0 for p in params.split(";")] if params else [0]
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            state.update(fg=None, bg=None, bold=False, dim=False, reverse=False)
        elif c == 1:
            state["bold"] = True
        elif c == 2:
            state["dim"] = True
        elif c == 22:
            state.update(bold=False, dim=False)
        elif c == 7:
            state["reverse"] = True
        elif c == 27:
            state["reverse"] = False
        elif 30 <= c <= 37:
            state["fg"] = PALETTE[c - 30]
        elif 90 <= c <= 97:
            state["fg"] = PALETTE[c - 90 + 8]
        elif c == 39:
            state["fg"] = None
        elif 40 <= c <= 47:
            state["bg"] = PALETTE[c - 40]
        elif 100 <= c <= 107:
            state["bg"] = PALETTE[c - 100 + 8]
        elif c == 49:
            state["bg"] = None
        elif c in (38, 48) and i + 1 < len(codes):
            key = "fg" if c == 38 else "bg"
            if codes[i + 1] == 5 and i + 2 < len(codes):
                state[key] = colour256(codes[i + 2])
                i += 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                state[key] = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                i += 4
        i += 1


def style(state):
    fg, bg = state["fg"] or FG, state["bg"] or BG
    if state["reverse"]:
        fg, bg = bg, fg
    css = "color:%s;background:%s" % (fg, bg)
    if state["bold"]:
        css += ";font-weight:bold"
    if state["dim"]:
        css += ";opacity:0.7"
    return css


def main():
    text = sys.stdin.read()
    state = dict(fg=None, bg=None, bold=False, dim=False, reverse=False)
    out = []
    for line in text.rstrip("\n").split("\n"):
        spans = []
        for part in re.split(r"(\x1b\[[0-9;]*m)", line):
            m = re.fullmatch(r"\x1b\[([0-9;]*)m", part)
            if m:
                apply(state, m.group(1))
            elif part:
                spans.append('<span style="%s">%s</span>' % (style(state), html.escape(part)))
        out.append("".join(spans))
    print(
        "<!doctype html><meta charset=utf-8><style>"
        "body{margin:0;background:%s}pre{margin:0;padding:12px;font:14px/1.25 'DejaVu Sans Mono',monospace;"
        "color:%s;background:%s}</style><pre>%s</pre>" % (BG, FG, BG, "\n".join(out))
    )


if __name__ == "__main__":
    main()
