#!/usr/bin/python3
"""The TerminalScreen oracle: does meshgate's repaint show what the recorded output showed?

    /usr/bin/python3 pyte_screen.py ROWS COLUMNS RAW_FILE REPAINT_FILE

Feeds RAW_FILE (a program's real PTY output) and REPAINT_FILE (TerminalScreen.repaint() after that output) to two
fresh pyte screens (Debian's python3-pyte 0.8.0, an emulator independent of libvterm) and compares what a user
sees: the text, each cell's fg, bg, bold, italics, underscore and reverse, the cursor (x, y, hidden), and the
scrollback (lines scrolled off the top of the whole primary screen, as xterm and libvterm keep them).
Exit 0 when they match; 1 with the first differing row on stdout.

OracleScreen below mends three pyte gaps so that the recording shows what xterm would:
- pyte has no alternate screen: DECSET 1047/1049 (as libvterm knows them) switch to one, so after a program leaves
  it the recording shows the restored primary grid;
- after the last column is written pyte keeps the cursor past it (x == columns), where EL/ED/ECH erase nothing;
  xterm erases from the last column;
- pyte erases only the cells a line has held (its lines are sparse), and lines that IL, DL or a scroll bring in
  are default ones; xterm paints both with the current background (BCE), as libvterm does;
- pyte hands CSI > … m (vim's modifyOtherKeys) to SGR as private and crashes; xterm ignores it.
"""
import sys

import pyte
from pyte import graphics

# Colours compare by palette index: pyte names SGR 30-37 ("red") but gives 38;5;N as hex, while a terminal draws
# 31 and 38;5;1 alike.
_NAMES = {name: index for index, name in enumerate(
    ["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"])}
_PALETTE = {value: index for index, value in reversed(list(enumerate(graphics.FG_BG_256)))}


def _colour(value):
    if value in _NAMES:
        return _NAMES[value]
    return _PALETTE.get(value, value)


class OracleScreen(pyte.Screen):
    _MODES = (1047, 1049)

    def __init__(self, columns, lines):
        super().__init__(columns, lines)
        self.primary = None
        self.history = []

    def _alternate(self, modes, kwargs):
        if not kwargs.get("private"):
            return modes, False
        switch = [m for m in modes if m in self._MODES]
        return [m for m in modes if m not in self._MODES], switch

    def set_mode(self, *modes, **kwargs):
        modes, switch = self._alternate(modes, kwargs)
        if switch and self.primary is None:
            if 1049 in switch:
                self.save_cursor()
            self.primary = {y: dict(line) for y, line in self.buffer.items()}
            self.buffer.clear()
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes, **kwargs):
        modes, switch = self._alternate(modes, kwargs)
        if switch and self.primary is not None:
            self.buffer.clear()
            for y, line in self.primary.items():
                self.buffer[y].update(line)
            self.primary = None
            self.dirty.update(range(self.lines))
            if 1049 in switch:
                self.restore_cursor()
        super().reset_mode(*modes, **kwargs)

    def select_graphic_rendition(self, *attrs, **kwargs):
        if not kwargs.get("private"):
            super().select_graphic_rendition(*attrs)

    def _scroll(self, operation, new_rows, *args):
        top, bottom = self.margins or (0, self.lines - 1)
        rows = new_rows(self.cursor.y, top, bottom)
        operation(*args)
        for y in rows:
            line = self.buffer[y]
            for x in range(self.columns):
                line[x] = self.cursor.attrs

    def insert_lines(self, count=None):
        n = count or 1
        self._scroll(super().insert_lines, lambda y, top, bottom: range(y, min(bottom + 1, y + n))
                     if top <= y <= bottom else [], count)

    def delete_lines(self, count=None):
        n = count or 1
        self._scroll(super().delete_lines, lambda y, top, bottom: range(max(y, bottom - n + 1), bottom + 1)
                     if top <= y <= bottom else [], count)

    def index(self):
        if self.primary is None and self.margins in (None, (0, self.lines - 1)) and self.cursor.y == self.lines - 1:
            self.history.append(dict(self.buffer[0]))
        self._scroll(super().index, lambda y, top, bottom: [bottom] if y == bottom else [])

    def reverse_index(self):
        self._scroll(super().reverse_index, lambda y, top, bottom: [top] if y == top else [])

    def _on_last_column(self, erase, *args, **kwargs):
        for y in range(self.lines):
            line = self.buffer[y]
            for column in range(self.columns):
                line[column] = line[column]
        x = self.cursor.x
        self.cursor.x = min(x, self.columns - 1)
        erase(*args, **kwargs)
        self.cursor.x = x

    def erase_in_line(self, *args, **kwargs):
        self._on_last_column(super().erase_in_line, *args, **kwargs)

    def erase_in_display(self, *args, **kwargs):
        self._on_last_column(super().erase_in_display, *args, **kwargs)

    def erase_characters(self, *args, **kwargs):
        self._on_last_column(super().erase_characters, *args, **kwargs)


def screen_after(path, rows, columns):
    screen = OracleScreen(columns, rows)
    stream = pyte.ByteStream(screen)
    with open(path, "rb") as f:
        stream.feed(f.read())
    return screen


def cell(screen, x, y, line=None):
    c = (line if line is not None else screen.buffer[y]).get(x, screen.default_char)
    if c.data.strip() == "" and not c.underscore and not c.reverse:
        # A blank shows its background only: the pen's foreground, bold and italics there are invisible.
        return (" ", None, _colour(c.bg), False, False, False, False)
    return (c.data, _colour(c.fg), _colour(c.bg), c.bold, c.italics, c.underscore, c.reverse)


def compare(rows, columns, raw_path, repaint_path):
    expected = screen_after(raw_path, rows, columns)
    actual = screen_after(repaint_path, rows, columns)
    for y in range(rows):
        for x in range(columns):
            want, got = cell(expected, x, y), cell(actual, x, y)
            if want != got:
                return (f"row {y} differs at column {x}\n"
                        f"  recording: {expected.display[y]!r}\n"
                        f"  repaint:   {actual.display[y]!r}\n"
                        f"  cell recording (data, fg, bg, bold, italics, underscore, reverse): {want}\n"
                        f"  cell repaint:    {got}")
    if len(expected.history) != len(actual.history):
        return f"scrollback differs: recording {len(expected.history)} lines, repaint {len(actual.history)}"
    for y, (want_line, got_line) in enumerate(zip(expected.history, actual.history)):
        for x in range(columns):
            want, got = cell(expected, x, y, want_line), cell(actual, x, y, got_line)
            if want != got:
                text = lambda line: "".join(line.get(i, expected.default_char).data for i in range(columns))
                return (f"scrollback line {y} differs at column {x}\n"
                        f"  recording: {text(want_line)!r}\n  repaint:   {text(got_line)!r}\n"
                        f"  cell recording: {want}\n  cell repaint:    {got}")
    # pyte keeps x == columns after the last column is written (wrap pending); a terminal shows it on the last.
    def where(screen):
        c = screen.cursor
        return (min(c.x, columns - 1), c.y, c.hidden)
    if where(expected) != where(actual):
        return f"cursor (x, y, hidden) differs: recording {where(expected)}, repaint {where(actual)}"
    return None


def main():
    rows, columns, raw_path, repaint_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    difference = compare(rows, columns, raw_path, repaint_path)
    if difference:
        print(difference)
        return 1
    print("same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
