"""What the benches write: their figures as JSON, and docs/BENCHMARKS.md.
make bench writes the document; each other bench (and make bench's own
--metrics-only, --balance-only) owns a section of it between `<!-- NAME:
begin ... -->` and `<!-- NAME: end -->` markers, rewritten in place and
kept by the others."""

import json
import os
import re


def read(path, missing):
    """path's text, or missing if there is no such file."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return missing


def write_json(path, value):
    """A run's figures, as JSON, at path (its directory made)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def write_section(text, path, begin, end):
    """Replace the section of path between begin and end with text (which
    holds both markers), or append it."""
    doc = read(path, "# Benchmarks\n")
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text.rstrip("\n") + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(doc)


def kept_sections(path):
    """The sections other benches own in the same document (make
    bench-streams, bench-balance): each between its own `<!-- NAME: begin`
    and `<!-- NAME: end -->` markers, kept as they are."""
    doc = read(path, "")
    return "".join("\n" + m.group(0) + "\n" for m in re.finditer(
        r"<!-- ([\w-]+): begin.*?<!-- \1: end -->", doc, re.S))
