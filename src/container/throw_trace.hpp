// Stacks of thrown exceptions, for the remote stack a caller sees. In a container, every throw records
// the thrower's stack (a few hundred ns, on the exceptional path only); elsewhere nothing is recorded.
#pragma once

#include <string>

namespace ferry::container {

/// Starts recording the stack at every throw in this process.
void record_throw_stacks();
/// On a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), writes the stack to stderr before dying, so that
/// the caller's ContainerCrashedError (which quotes the container's stderr) shows where.
void print_stack_on_fatal_signals();
/// The stack of the exception most recently thrown on this thread, one frame a line, demangled.
std::string last_throw_stack();

}  // namespace ferry::container
