# The environment CTest gives the programs it runs under mpiexec (the
# nn/distributed tests and the distributed_digits example): Open MPI in a
# container, as CI runs it: as root, more processes than cores, shared
# memory without cross-memory attach (ptrace is often not allowed).
# Open MPI keeps some of its allocations until exit: LeakSanitizer ignores
# those (lsan.supp names MPI's libraries only) and still reports ours. Open
# MPI is built without frame pointers, so the fast unwinder's stacks stop
# inside it before reaching a library's name; the slow unwinder's do not.
set(TAPEGRAD_MPI_TEST_ENVIRONMENT
  OMPI_ALLOW_RUN_AS_ROOT=1
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  OMPI_MCA_rmaps_base_oversubscribe=1
  OMPI_MCA_btl_vader_single_copy_mechanism=none
  LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/nn/distributed/lsan.supp:print_suppressions=0
  ASAN_OPTIONS=fast_unwind_on_malloc=0)
