"""Finding codes (code -> severity and default hint) and the validator's constants."""

from __future__ import annotations

import shlex
from pathlib import Path


ERROR = "error"
WARNING = "warning"

#: code -> (severity, default hint). Codes are stable identifiers; tests, CI and users may match on them.
CODES: dict[str, tuple[str, str]] = {
    # --- dataset / meta files -------------------------------------------------------------------------------
    "DATASET_NOT_FOUND": (ERROR, "Pass the dataset root: the folder that holds meta/, data/ and videos/."),
    "META_MISSING": (ERROR, "Restore the file from the dataset's source or re-export the dataset."),
    "JSON_INVALID": (ERROR, "Fix the JSON syntax at the reported line (a JSON validator shows the exact spot)."),
    "JSONL_INVALID": (ERROR, "Every line of a .jsonl file must be one JSON object; fix or remove the reported line."),
    "INTERNAL": (ERROR, "This is a validator bug or an unreadable file; report it with the file named here."),
    # --- A. metadata / schema -------------------------------------------------------------------------------
    "UNSUPPORTED_VERSION": (ERROR, "Convert the dataset to LeRobot v3.0, v2.1 or v2.0 with lerobot's converters."),
    "VERSION_LAYOUT_MISMATCH": (ERROR, "Make codebase_version in meta/info.json match the files on disk."),
    "INFO_KEY_MISSING": (ERROR, "Add the key to meta/info.json (see LeRobot's info.json format)."),
    "INFO_KEY_DEFAULTED": (WARNING, "LeRobot's default is used, as every reader does; add the key to be explicit."),
    "INFO_INVALID_VALUE": (ERROR, "Fix the value in meta/info.json."),
    "FPS_INVALID": (ERROR, "Set fps in meta/info.json to the positive integer frame rate of the recordings."),
    "FPS_NOT_INTEGER": (WARNING, "Write fps as an integer (e.g. 20, not 20.0); it is read as a number either way."),
    "FEATURE_INVALID": (ERROR, "Every feature needs a dtype and a shape (list of positive integers)."),
    "FEATURE_NAME_INVALID": (ERROR, "Rename the feature without '/' (LeRobot v3 flattens stats as stats/<feature>)."),
    "FEATURE_NAMES_MISMATCH": (
        WARNING,
        "Names only label elements and training ignores them, but `groot-ft modality init` cannot group them: give "
        "one name per element (len(names) == shape[0]) or set names to null.",
    ),
    "FEATURE_NAMES_UNSTRUCTURED": (
        WARNING,
        "Names only label elements and training ignores them, but `groot-ft modality init` cannot read them: use a "
        'list of strings, [[...]], {"motors": [...]}, {"name": index, ...} or null.',
    ),
    "VIDEO_INFO_LEGACY_KEY": (WARNING, 'Accepted; newer tools write the video metadata under "info".'),
    "VIDEO_INFO_MISSING": (WARNING, 'Add the video metadata ("info": {"video.fps", "video.codec", ...}).'),
    "TOTAL_EPISODES_MISMATCH": (ERROR, "Set total_episodes in meta/info.json to the number of episodes."),
    "TOTAL_FRAMES_MISMATCH": (ERROR, "Set total_frames in meta/info.json to the sum of the episode lengths."),
    "TOTAL_TASKS_MISMATCH": (ERROR, "Set total_tasks in meta/info.json to the number of tasks in the tasks file."),
    "TOTAL_VIDEOS_MISMATCH": (WARNING, "total_videos should be episodes x video features; it is informational."),
    "TOTAL_CHUNKS_MISMATCH": (WARNING, "total_chunks should be ceil(total_episodes / chunks_size); informational."),
    "SPLIT_INVALID": (WARNING, 'splits values should be "start:end" episode ranges; GR00T ignores them.'),
    "SPLIT_OUT_OF_RANGE": (WARNING, "Split ranges should lie within [0, total_episodes]; GR00T ignores splits."),
    "EMPTY_DATASET": (ERROR, "The dataset has no episodes; record or convert at least one episode."),
    "EPISODE_ENTRY_INVALID": (ERROR, "Each episode entry needs integer episode_index and length >= 0."),
    "EPISODE_TASKS_MISSING": (WARNING, "Add the episode's task strings (tasks) to its episodes metadata entry."),
    "EPISODE_INDICES_INVALID": (ERROR, "Episode indices must be exactly 0..N-1, unique and sorted; renumber them."),
    "ZERO_LENGTH_EPISODE": (ERROR, "Drop the empty episode (and renumber) or re-export it with its frames."),
    "TASK_ENTRY_INVALID": (ERROR, "Each task entry needs an integer task_index and a string task."),
    "TASK_INDICES_INVALID": (ERROR, "Task indices must be exactly 0..T-1 and unique; renumber the tasks."),
    "DUPLICATE_TASK": (ERROR, "Keep one line per task string and point every index column at it."),
    "EPISODE_TASK_UNKNOWN": (WARNING, "List only task strings that appear in the tasks file."),
    "PATH_TEMPLATE_INVALID": (ERROR, "Use LeRobot's placeholders ({episode_chunk}, {episode_index}, {video_key})."),
    "PATH_ESCAPES_ROOT": (ERROR, "Path templates must stay inside the dataset root; remove '..' or absolute parts."),
    # --- A'. LeRobot v3.0 metadata ------------------------------------------------------------------------------
    "V3_INFO_KEY_MISSING": (
        WARNING,
        "LeRobot v3 writers record data_files_size_in_mb and video_files_size_in_mb; readers do not need them.",
    ),
    "V3_EPISODES_SCHEMA": (
        ERROR,
        "meta/episodes/*.parquet needs integer episode_index, length, data/chunk_index, data/file_index, "
        "dataset_from_index, dataset_to_index and, per camera, videos/<key>/chunk_index, file_index, from_timestamp, "
        "to_timestamp; re-export the metadata.",
    ),
    "V3_INDEX_GAP": (
        ERROR,
        "dataset_from_index must start at 0 and each episode must start at the previous one's dataset_to_index; "
        "fix meta/episodes or re-export the dataset.",
    ),
    "V3_INDEX_LENGTH_MISMATCH": (ERROR, "dataset_to_index - dataset_from_index must equal the episode's length."),
    "V3_EPISODE_ROWS": (
        ERROR,
        "The data file must hold exactly length rows of the episode (episode_index == e, index == "
        "dataset_from_index..dataset_to_index-1), contiguous; fix meta/episodes or re-export the file.",
    ),
    "V3_VIDEO_SPAN_MISMATCH": (
        ERROR,
        "to_timestamp - from_timestamp must equal length / fps (within one frame); fix meta/episodes or re-encode.",
    ),
    "V3_TIMESTAMP_CHAIN": (
        ERROR,
        "Episodes sharing a video file must chain: the first starts at 0, each from_timestamp equals the previous "
        "to_timestamp and the last to_timestamp is the file's duration; fix meta/episodes or re-encode.",
    ),
    "V3_FILE_UNREFERENCED": (WARNING, "No episode points at this file; delete it or fix meta/episodes."),
    # --- B. parquet per episode -----------------------------------------------------------------------------
    "PARQUET_MISSING": (ERROR, "Restore the parquet file or drop its episodes from the episodes metadata."),
    "PARQUET_UNREADABLE": (ERROR, "Re-export the file; it is truncated or not a parquet file (missing footer?)."),
    "EPISODE_LENGTH_MISMATCH": (ERROR, "Make length in meta/episodes.jsonl equal the parquet row count."),
    "COLUMN_MISSING": (ERROR, "Add the column to the parquet file or remove the feature from meta/info.json."),
    "COLUMN_UNDECLARED": (WARNING, "Declare the column in meta/info.json features (it is ignored otherwise)."),
    "DEFAULT_COLUMN_MISSING": (WARNING, "LeRobot writes this column; GR00T does not need it."),
    "DTYPE_MISMATCH": (ERROR, "Store the column with the dtype declared in meta/info.json (or fix the declaration)."),
    "SHAPE_MISMATCH": (ERROR, "Every row must hold exactly shape[0] values, as declared in meta/info.json."),
    "NULL_VALUES": (ERROR, "Fill or drop the rows with missing values."),
    "NON_FINITE_VALUES": (ERROR, "Remove or repair frames with NaN/Inf; they poison statistics and training."),
    "VALUE_MAGNITUDE_LARGE": (WARNING, "Values above 1e6 usually mean wrong units or uninitialised data."),
    "EPISODE_INDEX_COLUMN_MISMATCH": (ERROR, "The episode_index column must equal the episode's index in every row."),
    "FRAME_INDEX_MISMATCH": (ERROR, "frame_index must be 0..L-1 in order within each episode."),
    "GLOBAL_INDEX_MISMATCH": (ERROR, "index must be the global frame counter, contiguous across episodes."),
    "TIMESTAMPS_NOT_INCREASING": (ERROR, "Timestamps must strictly increase within an episode; re-export it."),
    "TIMESTAMP_STEP_MISMATCH": (ERROR, "Consecutive timestamps must be 1/fps apart; fix fps or resample the episode."),
    "TIMESTAMP_DRIFT": (WARNING, "Timestamps drift from ts[0] + k/fps; the recording clock is not at fps."),
    "TIMESTAMP_START_NONZERO": (WARNING, "LeRobot timestamps start at 0; GR00T indexes frames and does not mind."),
    "TASK_INDEX_OUT_OF_RANGE": (ERROR, "Every task_index value must be a task_index of the tasks file."),
    "ANNOTATION_INDEX_OUT_OF_RANGE": (ERROR, "Annotation values index the tasks file; add the task or fix values."),
    "EPISODE_TASKS_MISMATCH": (WARNING, "List the tasks the episode's rows use in its episodes metadata entry."),
    "NEXT_DONE_INCONSISTENT": (WARNING, "next.done is expected to be true exactly on each episode's last frame."),
    # --- C. video -------------------------------------------------------------------------------------------
    "VIDEO_MISSING": (ERROR, "Restore the video file, or stop using this camera in modality.json / the config."),
    "UNUSED_VIDEO_MISSING": (WARNING, "Nothing uses this camera; remove the feature from meta/info.json to silence."),
    "VIDEO_UNREADABLE": (ERROR, "Re-encode the file (e.g. with PyAV/ffmpeg); it is truncated or not a video."),
    "VIDEO_STREAM_COUNT": (ERROR, "Each episode video must hold exactly one video stream."),
    "VIDEO_CODEC_UNSUPPORTED": (ERROR, "Re-encode with h264, hevc or av1."),
    "VIDEO_CODEC_MISMATCH": (WARNING, "Update video.codec in meta/info.json to the codec of the files."),
    "VIDEO_RESOLUTION_MISMATCH": (ERROR, "Fix the feature shape in meta/info.json or re-encode at that size."),
    "VIDEO_PIX_FMT_MISMATCH": (WARNING, "Update video.pix_fmt in meta/info.json to the files' pixel format."),
    "VIDEO_FPS_MISMATCH": (ERROR, "Videos must run at the dataset fps; re-encode or fix the declared fps."),
    "VIDEO_FRAME_COUNT_MISMATCH": (ERROR, "The video needs one frame per parquet row; re-encode it."),
    "VIDEO_EXTRA_FRAMES": (WARNING, "Frames past the last parquet row are never used by GR00T."),
    "VIDEO_DURATION_MISMATCH": (ERROR, "The video duration must match length / fps; re-encode the episode."),
    "VIDEO_DECODE_ERROR": (ERROR, "The file fails to decode; re-encode it from the source frames."),
    "VIDEO_SPARSE_KEYFRAMES": (WARNING, "Few keyframes make random access slow; re-encode with a small GOP (g=2)."),
    # --- D. stats files -------------------------------------------------------------------------------------
    "STATS_INVALID": (ERROR, "Fix or delete the stats file; the stats step regenerates meta/stats.json."),
    "STATS_UNKNOWN_FEATURE": (ERROR, "Stats keys must be features of meta/info.json; delete the stale entry."),
    "STATS_SHAPE_MISMATCH": (ERROR, "Stats arrays must be shaped like the feature; regenerate the stats."),
    "STATS_ORDER_VIOLATION": (ERROR, "Stats must satisfy min <= q01 <= ... <= q99 <= max and std >= 0; regenerate."),
    "STATS_COUNT_MISMATCH": (ERROR, "count must equal the number of frames; regenerate the stats."),
    "STATS_INCOMPLETE": (WARNING, "GR00T needs mean/std/min/max/q01/q99 per float feature; the stats step adds them."),
    "RELATIVE_STATS_MISMATCH": (
        WARNING,
        "relative_stats.json does not match the config; the stats step recomputes it.",
    ),
    # --- E. modality.json / config --------------------------------------------------------------------------
    "MODALITY_INVALID": (ERROR, "meta/modality.json maps state/action/video/annotation keys (see GR00T's docs)."),
    "MODALITY_UNKNOWN_KEY": (WARNING, "GR00T reads only state, action, video and annotation from modality.json."),
    "MODALITY_SLICE_INVALID": (ERROR, "Each group needs integers 0 <= start < end."),
    "MODALITY_SLICE_OUT_OF_BOUNDS": (ERROR, "end must not exceed the column's shape[0] in meta/info.json."),
    "MODALITY_SLICE_OVERLAP": (ERROR, "Groups of one column must not overlap; fix start/end."),
    "MODALITY_SLICE_GAP": (WARNING, "Groups do not tile [0, dim) exactly; unused dimensions are ignored."),
    "MODALITY_UNKNOWN_COLUMN": (ERROR, "original_key must name a non-video feature of meta/info.json."),
    "MODALITY_ROTATION_TYPE_INVALID": (ERROR, "Use one of GR00T's rotation types (axis_angle, quaternion, ...)."),
    "MODALITY_RANGE_INVALID": (ERROR, "range must be [lo, hi] with lo < hi."),
    "MODALITY_VIDEO_NOT_A_FEATURE": (ERROR, 'video original_key must be a dtype "video" feature of meta/info.json.'),
    "MODALITY_ANNOTATION_COLUMN_MISSING": (ERROR, "The annotation column must be a feature in meta/info.json."),
    "MODALITY_ANNOTATION_NOT_INT": (ERROR, "Annotation columns hold integer task indices (dtype int64)."),
    "CONFIG_KEY_MISSING": (ERROR, "Add the key to meta/modality.json or remove it from the modality config."),
    "CONFIG_RELATIVE_DIM_MISMATCH": (ERROR, "A RELATIVE action group needs a state group of the same dimension."),
    "EPISODE_SHORTER_THAN_HORIZON": (WARNING, "Episodes shorter than the action horizon yield no training samples."),
}

ROTATION_TYPES = frozenset(
    {"axis_angle", "quaternion", "rotation_6d", "matrix"}
    | {f"euler_angles_{o}" for o in ("rpy", "ryp", "pry", "pyr", "yrp", "ypr")}
)
SUPPORTED_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
CODEC_ALIASES = {
    "libdav1d": "av1",
    "libaom-av1": "av1",
    "libsvtav1": "av1",
    "libx264": "h264",
    "h265": "hevc",
    "libx265": "hevc",
    "libvpx-vp9": "vp9",
}
LEROBOT_DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
MODALITY_SECTIONS = ("state", "action", "video", "annotation")
STAT_ORDER = ("min", "q01", "q10", "q50", "q90", "q99", "max")
GROOT_STATS = ("mean", "std", "min", "max", "q01", "q99")
LARGE_VALUE = 1e6
SPARSE_GOP = 30  # mean frames per keyframe above which random access gets slow (LeRobot writes g=2)
GROUP_AFTER = 5  # summary_text: show this many findings of one code, then summarise the rest


def modality_missing_hint(dataset: str | Path) -> str:
    """META_MISSING's hint for ``meta/modality.json``: a plain LeRobot export has none, and the fix is a command.

    The proposed mapping need not go into the dataset (which may be read-only, shared or under DVC): it can be
    kept beside the run's config, which points at it.
    """
    root = shlex.quote(str(dataset))
    return (
        "A plain LeRobot export has no GR00T mapping; propose one from meta/info.json's feature names with "
        f"`groot-ft modality init {root} --out-config config/modality/my_robot.yaml "
        "--out-modality-json config/modality/my_robot.modality.json`, review it, and keep the mapping file outside "
        "the dataset: point the run config's modality_json_path (or --modality-json) at it, so nothing is written "
        "into the dataset."
    )
