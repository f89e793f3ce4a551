"""Replaces one `## TITLE` section of BENCHMARKS.md (or adds it) with SECTION, which starts with that heading.
The section goes at the end, where each benchmark script's run leaves it.

  replace_section.py TITLE SECTION
"""

import re
import sys


def main() -> None:
    title, section = sys.argv[1:3]
    text = open("BENCHMARKS.md").read()
    text = re.sub(r"\n## " + re.escape(title) + r"\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip()
    open("BENCHMARKS.md", "w").write(text + "\n\n" + section.strip() + "\n")


if __name__ == "__main__":
    main()
