// Helpers shared by the node/ tests: shell commands, async backend wrapper.
#ifndef TESTS_NODE_TEST_UTIL_H_
#define TESTS_NODE_TEST_UTIL_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace iser::node::test_util {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

inline CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) r.output.append(buf, n);
  int status = ::pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace iser::node::test_util

#endif  // TESTS_NODE_TEST_UTIL_H_
