"""Serve the flows as scheduled deployments: ``python -m flows.serve``.

``nightly`` runs every night and ``deliver`` every 15 minutes, by default; both show in the
Prefect UI, where they can also be run by hand. Point ``PREFECT_API_URL`` at a Prefect server
(``make ui`` starts one) before serving.
"""

from __future__ import annotations

import argparse

from prefect import serve

from flows.deliver import deliver
from flows.nightly import nightly


def main(argv: list[str] | None = None) -> None:
    """Serve the nightly and deliver deployments until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__)
    parser.add_argument("--workspace", help="workspace folder (default: NURTURE_WORKSPACE)")
    parser.add_argument("--data-dir", help="data folder (default: NURTURE_DATA_DIR)")
    parser.add_argument("--nightly-cron", default="0 2 * * *", help="cron of the nightly flow")
    parser.add_argument(
        "--deliver-every", type=int, default=900, help="seconds between deliver runs"
    )
    args = parser.parse_args(argv)
    parameters = {"workspace": args.workspace, "data_dir": args.data_dir}
    serve(
        nightly.to_deployment(
            name="nurture-nightly", cron=args.nightly_cron, parameters=parameters
        ),
        deliver.to_deployment(
            name="nurture-deliver", interval=args.deliver_every, parameters=parameters
        ),
    )


if __name__ == "__main__":
    main()
