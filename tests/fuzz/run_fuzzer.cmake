# ctest fuzz.<target>: fuzz a copy of the seed corpus for a bounded time.
#   cmake -DFUZZER=<binary> -DSEEDS=<corpus dir> -DWORK=<dir> -DSECONDS=<n> -P run_fuzzer.cmake
# The seeds are copied into WORK/corpus (libFuzzer adds what it finds there,
# never to the committed corpus); a crash, leak or timeout is written to
# WORK/artifacts/ and fails the test. To keep a finding, copy it into
# tests/fuzz/corpus/<target>/ (not named crash-*: .gitignore drops those).
foreach(var FUZZER SEEDS WORK SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${var}= is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK}/artifacts)  # so that a failure names this run's findings only
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=25 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/ ${WORK}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); inputs: ${found}")
endif()
