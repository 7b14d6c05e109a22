// Stacks of a container's failures, for what its caller sees: where a body's exception was thrown (the
// remote stack of RemoteError), and where a fatal signal struck (written to stderr, which the crash report
// quotes). Frames are named from the binary's own symbol table and debug information (elfutils' libdw):
// static functions and those in anonymous namespaces by their names, with file:line where there is debug
// information.
//
// By default a stack is the user's part of it: from the throw site (or the library function the body called
// when the signal struck, such as abort) down to the body, without the signal handler, libc's internals
// or ferry's container runtime below the body; at most 16 frames. FERRY_FULL_STACKS=1 in the container's
// environment shows every frame.
#pragma once

#include <string>

namespace ferry::container {

/// Starts recording the stack at every throw in this process (a few hundred ns per throw, on the exceptional
/// path only); elsewhere nothing is recorded.
void record_throw_stacks();
/// On a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), writes the stack to stderr before dying.
void print_stack_on_fatal_signals();
/// The stack of the exception most recently thrown on this thread, one frame a line.
std::string last_throw_stack();

}  // namespace ferry::container
