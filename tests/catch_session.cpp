// Catch2's implementation, compiled once for every test program, and the one entry to it: the
// programs' main() functions (test_main.cpp, the MPI programs' own) call run_catch_session.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/catch_session.hpp"

int loom::test::run_catch_session(int argc, char** argv) { return Catch::Session().run(argc, argv); }
