#include "cli/cli.hpp"

int main(int argc, char** argv) { return ferry::cli::run_cli(argc, argv); }
