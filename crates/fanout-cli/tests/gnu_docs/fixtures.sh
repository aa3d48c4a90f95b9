# Helpers for the `fixture:` snippets of examples.txt. tests/gnu_docs.rs
# sources this file with bash in a fresh, empty work directory before it
# runs a `fixture:` snippet, once for GNU parallel and once for fanout, so
# both start from the same files. `parallel` is deliberately not on PATH
# here: a fixture never depends on the tool under test.
#
# $FIXTURE_BIN is a directory that comes first on the example's PATH: a
# stand-in program written there replaces a program that Debian does not
# install by default (see `standin`).

# The files that parallel_tutorial's "Prerequisites" section asks the reader
# to create (num1000000 only with tutorial_big: 6.9 MB).
tutorial_files() {
  printf 'A\nB\nC\n' > abc-file
  printf 'D\nE\nF\n' > def-file
  printf 'A\0B\0C\0' > abc0-file
  printf 'A_B_C_' > abc_-file
  printf 'f1\tf2\nA\tB\nC\tD\n' > tsv-file.tsv
  seq 8 > num8
  seq 128 > num128
  seq 30000 > num30000
  (echo %head1; echo %head2; seq 10) > num_%header
  printf 'HHHHAAABBBCCC' > fixedlen
}

tutorial_big() {
  seq 1000000 > num1000000
}

# parallel_book's running example: `seq 5 | parallel seq {} '>' example.{}`
# and `seq 6 > seq6; seq 6 -1 1 > seq-6`.
book_files() {
  for i in 1 2 3 4 5; do seq "$i" > "example.$i"; done
  seq 6 > seq6
  seq 6 -1 1 > seq-6
}

# standin NAME SCRIPT: an executable NAME in $FIXTURE_BIN whose body is the
# bash SCRIPT. Used for programs an example needs that are not installed by
# default (convert, lame, ...), when the example's point is the parallel
# command line rather than the program's output.
standin() {
  printf '#!/bin/bash\n%s\n' "$2" > "$FIXTURE_BIN/$1"
  chmod +x "$FIXTURE_BIN/$1"
}

# A tiny image converter: `convert [options] IN OUT` copies IN to OUT with
# the options recorded on the first line, so the result shows which file
# went where and with what options.
standin_convert() {
  standin convert 'in=${@: -2:1}; out=${@: -1}; { echo "convert $*"; cat "$in"; } > "$out"'
}

# standin_copy NAME: a program NAME that writes "NAME ARGS" and then the
# contents of its input file to its output file, for converters called
# as `NAME IN -o OUT` (lame) or `NAME [options] IN OUT` (convert).
standin_copy() {
  standin "$1" '
out=${@: -1}; in=${@: -2:1}
[ "${@: -2:1}" = -o ] && in=$1
{ echo "'"$1"' $*"; cat "$in"; } > "$out"'
}

# standin_echo NAME: a program NAME that prints "NAME ARGS" (for the
# placeholders of the documentation: do_something, my_command, ...).
standin_echo() {
  standin "$1" 'echo "'"$1"' $*"'
}

# A filter (stdin to stdout) that makes a joblog comparable: Starttime and
# JobRuntime (columns 3 and 4) become T; everything else is kept.
joblog_normalize() {
  awk -F'\t' 'BEGIN { OFS = "\t" }
    NF >= 9 && $1 ~ /^[0-9]+$/ { $3 = "T"; $4 = "T" } { print }'
}

# joblog_normalize_file FILE: the same, in place.
joblog_normalize_file() {
  [ -f "$1" ] || return 0
  joblog_normalize < "$1" > "$1.normalized" && mv "$1.normalized" "$1"
}

# csv_normalize_file FILE: a --results CSV/TSV file with its Starttime and
# JobRuntime columns (3 and 4) masked, in place. Only rows starting with a
# job number are touched (output spanning lines continues a row).
csv_normalize_file() {
  [ -f "$1" ] || return 0
  perl -pe 's/^(\d+[,\t][^,\t]*[,\t])[0-9.]+([,\t])[0-9.]+/$1START$2RUNTIME/' < "$1" > "$1.normalized" &&
    mv "$1.normalized" "$1"
}

# A filter for `--files` output: the names of GNU parallel's temporary
# files are random (10 characters + .par); each listed file is removed
# (it may be outside the test's directory) and its name replaced by
# DIR/<random>.par.
files_filter() {
  while IFS= read -r f; do
    case $f in
      *.par) rm -f -- "$f"; echo "${f%/*}/<random>.par" ;;
      *) echo "$f" ;;
    esac
  done
}

# A filter that replaces date(1)'s default output with <date>.
date_filter() {
  sed -E 's/^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} [A-Z]+ [0-9]{4}$/<date>/'
}
