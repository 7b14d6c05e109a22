// The `ferry` command line: server, run, version. main() is a thin wrapper over run_cli.
#pragma once

namespace ferry::cli {

/// Parses the command line and runs the command; returns the process exit code (0 success, 1 failure,
/// 2 usage error).
int run_cli(int argc, char** argv);

}  // namespace ferry::cli
