"""``mpiexec -n N numcnn train --distributed``: the command-line side of data-parallel training
(:mod:`numcnn.distributed.trainer`). Every rank parses the same command; rank 0 chooses the run
directory, checks it, prints and writes; an error on any rank ends the whole job (MPI_Abort)."""

from __future__ import annotations

import os
import sys

from numcnn.errors import ConfigurationError

__all__ = ["run_distributed_train"]


def run_distributed_train(args, config) -> int:
    from numcnn.distributed import abort_on_error, world

    if not args.distributed:
        raise ConfigurationError("--sync-bn synchronises the processes of --distributed training; add --distributed")
    current = world()
    with abort_on_error(current):
        return _train(args, config, current)


def _train(args, config, current) -> int:
    from numcnn.cli.training import _point_latest, configure_compute, load_data, report_final, run_directory
    from numcnn.distributed.trainer import fit_distributed
    from numcnn.rundir import check_run_directory

    if args.checkpoint_every:
        raise ConfigurationError("--checkpoint-every is not available with --distributed: checkpoints at epoch ends")
    if args.resume and args.overwrite:
        raise ConfigurationError("--resume continues the run in --out, --overwrite replaces it: choose one")
    out = None
    if current.is_root:
        out = run_directory(args, config.model)
        check_run_directory(out, resume=args.resume, overwrite=args.overwrite)
    out = current.broadcast(out)
    if args.threads is None:  # the ranks of one host share its cores
        args.threads = max(1, (os.cpu_count() or 1) // current.ranks_on_this_host())
    configure_compute(args)
    # Rank 0 first, so that a download (if any) happens once; then the others read the files.
    if current.is_root:
        data = load_data(args)
    current.barrier()
    if not current.is_root:
        args.no_download = True
        data = load_data(args)
    try:
        history = fit_distributed(
            config, data, out, current, resume=args.resume, overwrite=args.overwrite, sync_bn=args.sync_bn,
            show_progress=not args.no_progress,
        )  # fmt: skip
    finally:
        if current.is_root and args.out is None and out.is_dir():
            _point_latest(out)
    if current.is_root:
        report_final(history, config, out)
    sys.stdout.flush()
    return 0
