// The program's terminal, shared by what ferry prints there: the lines containers write for this program's
// calls, ferry's own log lines, and f.map's progress bar. While a bar is drawn on the last line of stderr, a
// line printed to the same terminal first clears it and then draws it again below, so that the two never
// share a line.
//
// Concurrency: thread-safe (one lock for the terminal).
#pragma once

#include <string_view>

namespace ferry::client {

/// Writes all of `data` to `fd` (a terminal, a pipe), through short writes and writes a signal interrupts;
/// false if the descriptor fails (its reader has gone, say).
bool write_all(int fd, std::string_view data);

/// Prints whole lines (`text` ends with a newline) on `fd`, stdout or stderr, around the progress bar.
void print_lines(int fd, std::string_view text);

/// The bar on stderr's last line: drawn now, and again after each line printed (`bar` has no newline).
void draw_bar(std::string_view bar);
/// No bar any more: the last one drawn stays on its line (it gets its newline).
void end_bar();

}  // namespace ferry::client
