// SendFds/ReceiveFds: descriptors reach the other side as the same open files, in a
// child process too; bad messages fail without leaking descriptors.
#include "iser/base/fd_passing.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"

namespace iser {
namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a.Reset(sv[0]);
    b.Reset(sv[1]);
  }
};

TEST(FdPassing, ReceiverGetsTheSameOpenFiles) {
  Pair s;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  int fds[] = {wr.get(), rd.get()};
  ASSERT_TRUE(SendFds(s.a.get(), "fuse_fd=0 loop_fd=1", fds).ok());
  wr.Reset();  // the sender's copy is gone: only the passed one keeps the pipe open
  auto got = ReceiveFds(s.b.get());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->payload, "fuse_fd=0 loop_fd=1");
  ASSERT_EQ(got->fds.size(), 2u);
  EXPECT_NE(fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_EQ(write(got->fds[0].get(), "hi", 2), 2);
  char buf[2];
  ASSERT_EQ(read(got->fds[1].get(), buf, 2), 2);
  EXPECT_EQ(std::memcmp(buf, "hi", 2), 0);
}

TEST(FdPassing, ToAnotherProcess) {
  Pair s;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The successor: receive the write end and use it.
    auto got = ReceiveFds(s.b.get());
    if (!got.ok() || got->fds.size() != 1) _exit(1);
    _exit(write(got->fds[0].get(), "x", 1) == 1 ? 0 : 2);
  }
  int fds[] = {wr.get()};
  ASSERT_TRUE(SendFds(s.a.get(), "handover", fds).ok());
  wr.Reset();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char c = 0;
  EXPECT_EQ(read(rd.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(FdPassing, RejectsBadArguments) {
  Pair s;
  int fds[kMaxPassedFds + 1] = {};
  EXPECT_FALSE(SendFds(s.a.get(), "", {}).ok());
  EXPECT_FALSE(SendFds(s.a.get(), "x", fds).ok());
  s.a.Reset();
  auto got = ReceiveFds(s.b.get());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace iser
