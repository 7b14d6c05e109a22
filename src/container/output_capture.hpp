// What bodies write to std::cout, std::cerr and std::clog, tagged with the input they write it for, so
// that the server attributes every line to its call even when a container runs several inputs at once.
//
// A tagged line (wire::log_tag) reaches the container's stdout or stderr, pipes the server reads, in one
// write. What is written some other way (printf, a library writing to
// fd 1 or 2) arrives untagged; the server attributes it to the input running then, when there is one.
#pragma once

#include "container/current.hpp"

namespace ferry::container {

/// Replaces the standard streams' buffers with tagging ones and makes stdout line-buffered. Once, at start.
void capture_output();

/// Ends `input`'s unterminated lines (text written without a final newline) and flushes stdio, so that
/// everything the input wrote is in the pipes before its output is sent.
void flush_output(container::input_context& input);

}  // namespace ferry::container
