#pragma once
// Runs the Catch2 tests of this program with its command line (catch_session.cpp, where Catch2's
// implementation is compiled); returns the number of failed tests, capped at 255 by Catch2.
namespace loom::test {

int run_catch_session(int argc, char** argv);

}  // namespace loom::test
