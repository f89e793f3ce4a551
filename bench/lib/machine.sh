# shellcheck shell=bash
# The machine facts each benchmark's section of BENCHMARKS.md starts with: cores, CPU model, memory, kernel.
bench_machine() {
  echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
}
