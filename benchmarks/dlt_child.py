"""One run of the dlt source (`crisp_api.dlt.crisp_source`) into a DuckDB file, as a child of
section 9 (`benchmarks.dlt_source`): ``python -m benchmarks.dlt_child FOLDER WEBSITE_ID
WORKERS``, the credentials and host from ``CRISP_IDENTIFIER``, ``CRISP_KEY`` and
``CRISP_REST_HOST``. Prints the messages the destination holds after the run, as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dlt
import duckdb

from crisp_api.dlt import crisp_source


def main() -> int:
    folder, website_id, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    warehouse = folder / "warehouse.duckdb"
    pipeline = dlt.pipeline("crisp_bench", destination=dlt.destinations.duckdb(str(warehouse)),
                            pipelines_dir=str(folder / "pipelines"), dataset_name="crisp")
    pipeline.run(crisp_source([website_id], identifier=os.environ["CRISP_IDENTIFIER"],
                              key=os.environ["CRISP_KEY"],
                              rest_host=os.environ["CRISP_REST_HOST"], workers=workers))
    with duckdb.connect(str(warehouse), read_only=True) as db:
        found = db.execute("SELECT count(*) FROM crisp.messages").fetchone()
    print(json.dumps({"messages": 0 if found is None else int(found[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
