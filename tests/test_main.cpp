// main() of the test programs: a plain Catch2 session (command line: --help).
#include "support/catch_session.hpp"

int main(int argc, char** argv) { return loom::test::run_catch_session(argc, argv); }
