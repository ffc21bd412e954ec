"""Command-line options of the moderation pipeline, as a Beam ``PipelineOptions`` subclass.

Everything a run can be told lives here, so the same flags work on the
DirectRunner, on Dataflow and in the Flex Template's metadata (which
``deploy/`` checks against this parser).  The flags that shape classification
are the fields of :class:`ClassifySettings`, declared once with their defaults
and help and turned into flags by :func:`flaxmodel.flags.add_flags`; the
reading and writing flags are declared in :class:`ModerationOptions`.
"""

from __future__ import annotations

import dataclasses

from apache_beam.options.pipeline_options import PipelineOptions

from flaxmodel import AUTO_PRECISION, PRECISIONS
from flaxmodel import OptionError
from flaxmodel.flags import add_bool_flag, add_flags, flag, from_namespace
from flaxmodel.records import FORMATS as INPUT_FORMATS

FORMATS = ("auto", *INPUT_FORMATS)
AGGREGATIONS = ("max", "mean")

__all__ = [
    "AGGREGATIONS",
    "FORMATS",
    "REQUIRED",
    "ClassifySettings",
    "ModerationOptions",
    "OptionError",
    "ReviewSettings",
]


@dataclasses.dataclass(frozen=True)
class ClassifySettings:
    """The flags that shape classification (tokenizing, batching, the model and its run)."""

    model: str | None = flag(
        None, "Checkpoint folder (local or gs://) or a bundled model's name (default, large); default: default."
    )
    max_length: int = flag(128, "Tokens per window, special tokens included.")
    stride: int = flag(32, "Tokens shared by consecutive windows of a long text.")
    max_windows: int = flag(16, "Windows per record; beyond it the record is marked truncated.")
    aggregate: str = flag("max", "How window scores combine into the record's scores.", choices=AGGREGATIONS)
    batch_size: int = flag(
        0,
        "Largest number of windows per model batch; 0: automatic, decided on each worker (64 on CPUs, 1024 on "
        "GPUs and TPUs).",
    )
    max_batch_tokens: int = flag(
        0,
        "Padded tokens per batch of several records; 0: automatic (1024 on CPU workers, whose batches run "
        "fastest within cache; no cap on accelerators).",
    )
    sort_buffer: int = flag(
        4096,
        "Windows sorted by length together and cut into batches (within each block of 4096 records read); more "
        "means less padding.",
    )
    precision: str = flag(
        AUTO_PRECISION,
        "Precision of the model's matrix multiplies (norms, softmax and accumulation stay float32); auto, decided "
        "on each worker: bfloat16 on TPUs and GPUs with bfloat16 tensor cores (A100, L4, H100), float32 on older "
        "GPUs (T4), and on CPUs the fastest path within its quality bound, timed at load (bfloat16 and int8 are "
        "tried only where the CPU has AVX512-BF16/AMX or VNNI).",
        choices=(AUTO_PRECISION, *PRECISIONS),
    )
    compilation_cache_dir: str | None = flag(
        None, "Persistent XLA compilation cache directory, so restarted workers skip compiling."
    )
    calibration_cache_dir: str | None = flag(
        None,
        "Where --precision auto stores the path it measured on a CPU, per CPU type and model, and reuses it from, "
        "so that every run on that machine type runs the same path; default: calibration/ inside "
        "--compilation_cache_dir when that is given, else measured at every worker start.",
    )
    max_payload_bytes: int = flag(1024, "Cap on the raw payload kept in dead-letter rows.")
    model_copies: int = flag(
        0,
        "0: each SDK process loads its own model; N > 0: the SDK processes of a worker share N copies held by "
        "one model process (Beam's share_model_across_processes; see deploy/README.md).",
    )

    @classmethod
    def from_options(cls, options: PipelineOptions) -> "ClassifySettings":
        return from_namespace(cls, options.view_as(ModerationOptions))


@dataclasses.dataclass(frozen=True)
class ReviewSettings:
    """The flags of the review sample (``review-*.parquet``; design in :mod:`pipelines.sinks.review`)."""

    review_sample: int = flag(
        0,
        "Write up to this many records, drawn by a stratified design (near a threshold, flagged, each top label) "
        "with known inclusion probabilities, to review-*.parquet for human review; 0: no review sample.",
    )
    review_seed: int = flag(0, "Seed of the review sample's hash: the same seed and input give the same sample.")
    review_band: float = flag(
        0.1,
        "A record is 'near a threshold' when a class score lies within this distance of its --threshold.",
    )

    @classmethod
    def from_options(cls, options: PipelineOptions) -> "ReviewSettings":
        """The review flags of ``options``; raises :class:`OptionError` for a value that cannot work."""
        settings = from_namespace(cls, options.view_as(ModerationOptions))
        if settings.review_sample < 0:
            raise OptionError(f"--review_sample {settings.review_sample}: must be 0 (off) or a number of records")
        if not 0.0 <= settings.review_band < 1.0:
            raise OptionError(f"--review_band {settings.review_band}: must be in [0, 1)")
        return settings


# Checked by check_required() rather than argparse's required=True: Beam parses every
# registered options class on each Pipeline.run(), so a required flag here would break
# any other pipeline run in the same process.
REQUIRED = ("input", "output")
# Real feeds dead-letter well under 1% (empty or broken lines); a changed input format or a wrong
# --text_field dead-letters nearly everything.  10% separates the two with room for messy sources.
DEFAULT_MAX_DEAD_LETTER_FRACTION = 0.1


class ModerationOptions(PipelineOptions):
    def check_required(self) -> None:
        """Raises :class:`OptionError` naming the first required flag left unset."""
        for name in REQUIRED:
            if not getattr(self, name):
                raise OptionError(f"--{name} is required")

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input",
            action="append",
            help="File pattern of input shards (local or gs://, globs, .gz); repeat or comma-separate for several.",
        )
        parser.add_argument("--output", help="Output directory for labels-*.parquet and dead_letter-*.parquet.")
        parser.add_argument("--format", default="auto", choices=FORMATS, help="Input format; auto picks it from the file extension (default: %(default)s).")
        parser.add_argument("--text_field", default="text", help="Field (JSONL, Parquet) or column (CSV) holding the text (default: %(default)s).")
        parser.add_argument("--id_field", default=None, help="Field holding the record id; default: stable id from file path and position.")
        parser.add_argument("--keep_fields", default="", help="Comma-separated input fields copied to the output rows.")
        add_bool_flag(
            parser,
            "keep_text",
            default=False,
            help="Also write the text to the output rows (--keep_text, or --keep_text=true|false as templates pass it; "
            "default: false).",
        )
        parser.add_argument(
            "--threshold",
            default="",
            help="Per-class flag thresholds, e.g. hate=0.5,offensive=0.7; a row is flagged if any class reaches its "
            "threshold. Default: the model folder's recommended thresholds (thresholds.json), if any; none: no flagging.",
        )
        add_bool_flag(
            parser,
            "overwrite",
            default=False,
            help="Replace the outputs of a complete earlier run in --output, only once the new ones are complete; "
            "without it such a directory is refused (default: false).",
        )
        parser.add_argument(
            "--max_dead_letter_fraction",
            type=float,
            default=DEFAULT_MAX_DEAD_LETTER_FRACTION,
            help="Exit non-zero (after writing every output) when more than this share of the records read was "
            "dead-lettered, so a scheduler notices a changed input format; 1 turns the check off "
            "(default: %(default)s).",
        )
        add_flags(parser, ClassifySettings)
        add_flags(parser, ReviewSettings)
