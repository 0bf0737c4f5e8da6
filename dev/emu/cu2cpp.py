"""
dev/emu/cu2cpp.py: copies CUDA sources into a build folder as plain C++ for the CPU emulation
(dev/emu/cuda_runtime.h), rewriting only what C++ cannot parse:
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  EMU_LAUNCH(kernel, grid, block[, smem[, stream]])(args)
  extern __shared__ T name[];                      ->  T* name = (T*)emu::dynamic_shared();
  __shared__ T name[A][B], ...;                    ->  auto& name = *(T(*)[A][B])emu::block_shared(key, bytes); ...
Lines keep their numbers, and each file starts with a #line naming the original, so compiler errors and
sanitizer reports point at the real source. Other files (.c, .h) are copied as they are, with the #line.

usage: python dev/emu/cu2cpp.py OUT_DIR FILE...   (paths relative to the repository root)
"""
import os
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;")
STATIC_SHARED = re.compile(r"__shared__\s+([\w:]+)\s+([^;]+);")
DECLARATOR = re.compile(r"\s*(\w+)\s*((?:\[[^\]]+\])+)\s*$")


def keep_lines(old, new):
    # the replacement, with as many newlines as the text it replaces
    return new + "\n" * (old.count("\n") - new.count("\n"))


def rewrite(path, text):
    def launch(m):
        return keep_lines(m.group(0), "EMU_LAUNCH(%s, %s)(" % (m.group(1), " ".join(m.group(2).split())))
    text = LAUNCH.sub(launch, text)
    text = EXTERN_SHARED.sub(lambda m: "%s* %s = (%s*)emu::dynamic_shared();" % (m.group(1), m.group(2), m.group(1)),
                             text)

    def static(m):
        line = text.count("\n", 0, m.start()) + 1
        t, out = m.group(1), []
        for d in m.group(2).split(","):
            name, dims = DECLARATOR.match(d).groups()
            out.append('auto& %s = *(%s(*)%s)emu::block_shared("%s:%d:%s", sizeof(%s%s));'
                       % (name, t, dims, path, line, name, t, dims))
        return keep_lines(m.group(0), " ".join(out))
    text = STATIC_SHARED.sub(static, text)
    for construct in ("<<<", "__shared__"):
        if construct in text:
            line = text[:text.index(construct)].count("\n") + 1
            sys.exit("cu2cpp.py: %s:%d: a %s this script does not rewrite" % (path, line, construct))
    return text


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    for path in sys.argv[2:]:
        with open(path) as f:
            text = f.read()
        if path.endswith((".cu", ".cuh")):
            text = rewrite(path, text)
        dst = os.path.join(out, path)
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        new = '#line 1 "%s"\n%s' % (path, text)
        # rewrite only what changed, so make does not rebuild for nothing
        if os.path.exists(dst):
            with open(dst) as f:
                if f.read() == new:
                    continue
        with open(dst, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
