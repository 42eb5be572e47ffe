# Sourced by the BuilderNet scripts. `log TEXT` (or `... | log`) prints and also sends the
# line to the journal with the tag operator-api-pipe, which operator-api shows the operator.
log() {
  if [ $# -gt 0 ]; then
    printf '%s\n' "$*" | tee >(systemd-cat -t operator-api-pipe)
  else
    tee >(systemd-cat -t operator-api-pipe)
  fi
}
