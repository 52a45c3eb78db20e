"""Write the size and mtime of every dataset file the pipeline reads to one small JSON file (rule dataset_listing).

The rules that read the dataset take this listing as input instead of the files themselves, so Snakemake checks the
dataset's thousands of files once per run rather than once per rule. The listing changes whenever a file is edited,
added or removed, and that reruns those rules as the files themselves would.
"""

import json
import os
import sys
from pathlib import Path

with open(snakemake.log[0], "w") as log:  # noqa: F821 - injected by Snakemake
    sys.stderr = log
    inputs = snakemake.input.dataset  # noqa: F821
    files = []
    # one named input is a plain string: the generated demo dataset, a single directory
    for item in map(Path, [inputs] if isinstance(inputs, str) else inputs):
        files += sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
    listing = {}
    for path in files:
        st = path.stat()
        listing[str(path)] = [st.st_size, st.st_mtime_ns]
    out = Path(snakemake.output.listing)  # noqa: F821
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(listing, indent=0, sort_keys=True) + "\n")
    os.replace(tmp, out)
    print(f"listed {len(listing)} dataset files in {out}", file=log)
