# The training run of stage 1 (cmake/pgo.cmake): a fresh profile, checked.
# -D PROFILE=<directory of .gcda files> TRAINING=<program> STAMP=<file written last>
file(GLOB old ${PROFILE}/*.gcda)
if(old)
  file(REMOVE ${old})  # counts would add up over runs; a changed object's would not match
endif()
execute_process(COMMAND ${TRAINING} RESULT_VARIABLE failed OUTPUT_QUIET)
if(failed)
  message(FATAL_ERROR "the training run of the profile-guided build failed: ${failed}")
endif()
file(GLOB written ${PROFILE}/*.gcda)
list(LENGTH written count)
if(count EQUAL 0)
  message(FATAL_ERROR "the training run wrote no profile into ${PROFILE}")
endif()
file(TOUCH ${STAMP})
