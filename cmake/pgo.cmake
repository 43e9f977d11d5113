# Profile-guided build of the engine (TAPEGRAD_PGO, GCC).
#
# Stage 1 is a build of its own, inside this one (ExternalProject of this
# source tree): the engine compiled with -fprofile-generate, linked whole into
# cmake/pgo_training.cpp, which is run to write the profile (one .gcda file per
# object). Stage 2 is this build: the engine's objects compiled with
# -fprofile-use from that profile, and recompiled whenever it is written again
# (after any change to the engine's sources). Only the engine's own targets
# take the profile: tests, benchmarks and examples are compiled as usual.
#
# g++ names a profile after its object's path; -fprofile-prefix-path strips
# each build's own directory from it, so that both stages, whose objects lie at
# the same places under different directories, name them alike.
#
# Why: on small models the engine's time goes to bookkeeping spread over many
# small functions (benchmarks/README.md, where the time goes). g++'s static guesses lay the engine's code out by source order and branch
# heuristics; the profile lays out the hot paths together and inlines by use.

# The profile's directory; the training run touches <directory>.stamp last.
set(TAPEGRAD_PGO_DIR ${PROJECT_BINARY_DIR}/pgo)
set(TAPEGRAD_PGO_PROFILE ${TAPEGRAD_PGO_DIR}/profile)

# Stage 1, inside its own build (TAPEGRAD_PGO_INSTRUMENT names the profile directory).
function(tapegrad_pgo_training_run)
  # Every object of the engine, run or not (not only those an archive would
  # give): each then has a profile, and stage 2 can insist on finding one
  # (-Werror=missing-profile). The libraries bring their usage requirements.
  add_executable(tapegrad_pgo_training ${PROJECT_SOURCE_DIR}/cmake/pgo_training.cpp
    $<TARGET_OBJECTS:tapegrad_autodiff> $<TARGET_OBJECTS:tapegrad_nn>)
  target_link_libraries(tapegrad_pgo_training PRIVATE tapegrad::nn tapegrad_warnings)
  target_link_options(tapegrad_pgo_training PRIVATE -fprofile-generate)
  set(stamp ${TAPEGRAD_PGO_INSTRUMENT}.stamp)
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DPROFILE=${TAPEGRAD_PGO_INSTRUMENT} -DTRAINING=$<TARGET_FILE:tapegrad_pgo_training>
            -DSTAMP=${stamp} -P ${PROJECT_SOURCE_DIR}/cmake/pgo_train.cmake
    DEPENDS tapegrad_pgo_training ${PROJECT_SOURCE_DIR}/cmake/pgo_train.cmake
    COMMENT "Profile-guided build: the training run (cmake/pgo_training.cpp)"
    VERBATIM)
  add_custom_target(tapegrad_pgo_profile DEPENDS ${stamp})
endfunction()

# Stage 2: this build.
if(TAPEGRAD_PGO)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU" OR CMAKE_CXX_COMPILER_VERSION VERSION_LESS 11)
    message(FATAL_ERROR "TAPEGRAD_PGO needs g++ 11 or later (-fprofile-prefix-path)")
  endif()
  if(TAPEGRAD_SANITIZE)
    message(FATAL_ERROR "TAPEGRAD_PGO and TAPEGRAD_SANITIZE exclude each other: sanitized builds are for finding bugs")
  endif()
  include(ExternalProject)
  ExternalProject_Add(tapegrad_pgo_stage1
    SOURCE_DIR ${PROJECT_SOURCE_DIR}
    BINARY_DIR ${TAPEGRAD_PGO_DIR}/instrumented
    CMAKE_GENERATOR ${CMAKE_GENERATOR}
    # The same compiler and flags as this build: the profile describes the
    # code g++ builds from them.
    CMAKE_ARGS
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
      -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
      -DCMAKE_CXX_FLAGS=${CMAKE_CXX_FLAGS}
      -DTAPEGRAD_NATIVE=${TAPEGRAD_NATIVE}
      -DTAPEGRAD_TESTS=OFF -DTAPEGRAD_EXAMPLES=OFF -DTAPEGRAD_BENCHMARKS=OFF -DTAPEGRAD_INSTALL=OFF
      -DTAPEGRAD_PGO=OFF -DTAPEGRAD_PGO_INSTRUMENT=${TAPEGRAD_PGO_PROFILE}
    BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target tapegrad_pgo_profile
    # Always asked, so that a change to the engine reaches stage 1; its own
    # build then does nothing unless a source changed.
    BUILD_ALWAYS ON
    BUILD_BYPRODUCTS ${TAPEGRAD_PGO_PROFILE}.stamp
    INSTALL_COMMAND "")
endif()

# Called by each engine target's CMakeLists: instrumented in stage 1,
# compiled from the profile in stage 2.
function(tapegrad_profile_guided target)
  if(TAPEGRAD_PGO_INSTRUMENT)
    target_compile_options(${target} PRIVATE
      -fprofile-generate=${TAPEGRAD_PGO_INSTRUMENT} -fprofile-prefix-path=${PROJECT_BINARY_DIR}
      -fprofile-update=single)
  elseif(TAPEGRAD_PGO)
    target_compile_options(${target} PRIVATE
      -fprofile-use=${TAPEGRAD_PGO_PROFILE} -fprofile-prefix-path=${PROJECT_BINARY_DIR}
      # Functions the training never ran are optimised as without a profile,
      # not for size as if they were cold.
      -fprofile-partial-training
      -Werror=missing-profile)
    add_dependencies(${target} tapegrad_pgo_stage1)
    get_target_property(sources ${target} SOURCES)
    set_source_files_properties(${sources} PROPERTIES OBJECT_DEPENDS ${TAPEGRAD_PGO_PROFILE}.stamp)
  endif()
endfunction()
