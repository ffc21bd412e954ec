"""Command-line options of the moderation pipeline, as a Beam ``PipelineOptions`` subclass.

Everything a run can be told lives here, so the same flags work on the
DirectRunner, on Dataflow and in the Flex Template's metadata (which
``deploy/`` checks against this parser).
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

FORMATS = ("auto", "text", "jsonl", "csv", "parquet")
AGGREGATIONS = ("max", "mean")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def parse_flag(value: str) -> bool:
    """A boolean option's value; Dataflow Flex Templates pass every parameter as ``--name=value``."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {_TRUE + _FALSE}, got {value!r}")


class OptionError(ValueError):
    """A flag value that cannot work; the message says which flag and what to change."""


# Checked by check_required() rather than argparse's required=True: Beam parses every
# registered options class on each Pipeline.run(), so a required flag here would break
# any other pipeline run in the same process.
REQUIRED = ("input", "output")


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
        parser.add_argument("--model", default=None, help="Checkpoint folder (local or gs://); default: the bundled default model.")
        parser.add_argument("--format", default="auto", choices=FORMATS, help="Input format; auto picks it from the file extension.")
        parser.add_argument("--text_field", default="text", help="Field (JSONL, Parquet) or column (CSV) holding the text.")
        parser.add_argument("--id_field", default=None, help="Field holding the record id; default: stable id from file path and position.")
        parser.add_argument("--keep_fields", default="", help="Comma-separated input fields copied to the output rows.")
        parser.add_argument(
            "--keep_text",
            nargs="?",
            const=True,
            default=False,
            type=parse_flag,
            help="Also write the text to the output rows (--keep_text, or --keep_text=true|false as templates pass it).",
        )
        parser.add_argument(
            "--threshold",
            default="",
            help="Per-class flag thresholds, e.g. hate=0.5,offensive=0.7; a row is flagged if any class reaches its threshold.",
        )
        parser.add_argument("--max_length", type=int, default=128, help="Tokens per window, special tokens included.")
        parser.add_argument("--stride", type=int, default=32, help="Tokens shared by consecutive windows of a long text.")
        parser.add_argument("--max_windows", type=int, default=16, help="Windows per record; beyond it the record is marked truncated.")
        parser.add_argument("--aggregate", default="max", choices=AGGREGATIONS, help="How window scores combine into the record's scores.")
        parser.add_argument("--batch_size", type=int, default=64, help="Largest number of windows per model batch.")
        parser.add_argument(
            "--max_batch_tokens",
            type=int,
            default=0,
            help="Padded tokens per batch of several records; 0: automatic (1024 on CPU workers, whose batches run "
            "fastest within cache; no cap on accelerators).",
        )
        parser.add_argument(
            "--sort_buffer",
            type=int,
            default=4096,
            help="Windows buffered per bundle, then sorted by length and cut into batches; more means less padding.",
        )
        parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="Compute dtype.")
        parser.add_argument("--max_payload_bytes", type=int, default=1024, help="Cap on the raw payload kept in dead-letter rows.")
        parser.add_argument(
            "--compilation_cache_dir",
            default=None,
            help="Persistent XLA compilation cache directory, so restarted workers skip compiling.",
        )
