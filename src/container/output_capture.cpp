#include "container/output_capture.hpp"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <mutex>
#include <streambuf>
#include <string>

#include "client/terminal.hpp"
#include "wire/protocol.hpp"

namespace ferry::container {

namespace {

/// Writes `line` (without its newline) for `input`, tagged.
void write_line(int fd, const container::input_context& input, const std::string& line) {
  std::string out;
  out.reserve(line.size() + 24);
  out += wire::log_tag;
  out += std::to_string(input.input_id);
  out += wire::log_tag;
  out += line;
  out += '\n';
  client::write_all(fd, out);  // (false: the server has gone, and there is nobody to tell)
}

/// A stream buffer that collects characters per input (or, outside any input, in a buffer of its own) and
/// writes each completed line at once.
class tagging_buffer final : public std::streambuf {
 public:
  tagging_buffer(int fd, int index) : fd_(fd), index_(index) {}

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    xsputn(&ch, 1);
    return c;
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    container::input_context* input = container::current_input();
    std::mutex& mu = input ? input->output_mu : untagged_mu_;
    std::string& partial = input ? input->partial_line[index_] : untagged_;
    std::lock_guard lock(mu);
    for (std::streamsize i = 0; i < n; ++i) {
      if (s[i] != '\n') {
        partial += s[i];
        continue;
      }
      if (input) {
        write_line(fd_, *input, partial);
      } else {
        partial += '\n';
        client::write_all(fd_, partial);
      }
      partial.clear();
    }
    return n;
  }

 private:
  const int fd_;
  const int index_;  // 0: stdout, 1: stderr
  std::mutex untagged_mu_;
  std::string untagged_;  // guarded by untagged_mu_
};

}  // namespace

void capture_output() {
  // Leaked on purpose: the streams may be written to until the process's very end.
  static auto* out = new tagging_buffer(STDOUT_FILENO, 0);
  static auto* err = new tagging_buffer(STDERR_FILENO, 1);
  std::cout.rdbuf(out);
  std::cerr.rdbuf(err);
  std::clog.rdbuf(err);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
}

void flush_output(container::input_context& input) {
  std::fflush(nullptr);
  std::lock_guard lock(input.output_mu);
  for (int index = 0; index < 2; ++index) {
    if (input.partial_line[index].empty()) continue;
    write_line(index == 0 ? STDOUT_FILENO : STDERR_FILENO, input, input.partial_line[index]);
    input.partial_line[index].clear();
  }
}

}  // namespace ferry::container
