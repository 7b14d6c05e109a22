// A program that declares its App at namespace scope with a name ferry refuses: the error escapes a static
// initializer, where nothing can catch it (tests/e2e/embedded_test.cpp checks what the program does then).
#include <ferry/ferry.hpp>

ferry::App app{"my.app"};

int main(int argc, char** argv) {
  return app.main(argc, argv, [] {});
}
