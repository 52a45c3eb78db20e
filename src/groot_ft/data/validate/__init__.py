"""Validate a GR00T-flavoured LeRobot dataset up front and report every problem at once.

Upstream GR00T discovers a broken dataset mid-training, one bare ``KeyError`` at a time. :func:`validate_dataset`
instead checks everything the loader, the stats step and training will rely on (the invariant list of
``dataset-formats.md`` §2: A metadata/schema, B parquet per episode, C video, D stats files, E ``modality.json``, plus
the user's modality config) and returns a :class:`ValidationReport` with one :class:`Finding` per problem.

Design rules:

* it never modifies the dataset and never raises on bad input: each check turns problems into findings, and an
  unexpected exception inside a check becomes an ``INTERNAL`` error naming the file it was looking at;
* every finding carries a stable ``code`` (see :data:`CODES`, which also fixes each code's severity and default hint),
  the file relative to the dataset root, the episode and the field (column, JSON key or ``"line N"``);
* the per-episode pass streams one episode at a time and reads only the declared columns, so memory does not grow
  with the number of episodes (only counters and findings are kept);
* on-disk layouts plug in through :class:`Layout`: :class:`V2Layout` (v2.0/v2.1: one parquet and one mp4 per
  episode, JSONL metadata) and :class:`V3Layout` (v3.0: many episodes per parquet/mp4 file, located by the
  ``meta/episodes/*.parquet`` rows; ``meta/tasks.parquet``). Each provides ``check_layout``/``load_episodes``/
  ``load_tasks``/``episode_sources``/``open_table``/``check_episode_videos``/``finish``/``check_stats``; the column,
  timestamp, video-file and modality checks are shared. v3 adds the row-range and video-time-window invariants
  (``dataset-formats.md`` §2 invariants 8 and 15): ``V3_INDEX_GAP``, ``V3_INDEX_LENGTH_MISMATCH``, ``V3_EPISODE_ROWS``,
  ``V3_VIDEO_SPAN_MISMATCH``, ``V3_TIMESTAMP_CHAIN``; and a video file is checked once, against the sum of the
  lengths of the episodes it holds.

The checks live in the modules of this package (``codes``, ``report``, ``context``, ``run``, ``layouts``, ``v2``,
``v3``, ``info``, ``modality``, ``episodes``, ``videos``, ``stats_files``); the layout itself (info.json keys and
defaults, templates, episode tables) is :mod:`groot_ft.data.layout`, shared with the reader.
"""

from groot_ft.data.validate.codes import CODES, ERROR, WARNING
from groot_ft.data.validate.report import Finding, ValidationReport
from groot_ft.data.validate.run import validate_dataset

__all__ = ["CODES", "ERROR", "WARNING", "Finding", "ValidationReport", "validate_dataset"]
