"""An action written for Roboto (roboto SDK's InvocationContext), running on hatchway unchanged.

It reads its parameters through the SDK, counts the lines of every input file the run named, and
writes a report to out/files/ (a run artifact).
"""

import json

from roboto import InvocationContext

context = InvocationContext.from_env()
threshold = float(context.get_parameter("threshold"))
label = context.get_optional_parameter("label", "report")
inputs = sorted(p for p in context.input_dir.rglob("*") if p.is_file())
counts = {p.relative_to(context.input_dir).as_posix(): len(p.read_text().splitlines()) for p in inputs}
over = [name for name, lines in counts.items() if lines > threshold]
report = {"label": label, "threshold": threshold, "files": counts, "over": over}
print(f"{label}: {len(counts)} input file(s), invocation {context.invocation_id} in {context.org_id}")
files = context.output_dir / "files"
files.mkdir(parents=True, exist_ok=True)
(files / f"{label}.json").write_text(json.dumps(report))
(context.output_dir / "result.json").write_text(json.dumps(report))
