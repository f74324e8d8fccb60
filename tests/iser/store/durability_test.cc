// "Acknowledged writes survive a target crash once a SYNCHRONIZE CACHE or FUA write has
// completed": a forked child writes, makes it durable, and is killed without any cleanup;
// the parent reopens the file (the child's lock died with it) and finds the data.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "iser/store/sparse_file_store.h"
#include "tests/iser/store/store_test_util.h"

namespace iser::store {
namespace {

using testing::IoPath;

enum class Durable { kFlush, kFua };

struct Param {
  IoPath path;
  Durable how;
};

class DurabilityTest : public ::testing::TestWithParam<Param> {};

TEST_P(DurabilityTest, AcknowledgedWritesSurviveSigkill) {
  testing::TempDir dir;
  const std::string file = dir.File("lun");
  constexpr uint64_t kSize = 8 << 20;
  constexpr size_t kLen = 256 * 1024;
  const auto data = testing::Pattern(kLen, 77);
  {
    // Open in the parent first so the child inherits a thread that already has a ring
    // (the child must build its own).
    SparseFileStore::Options o;
    o.size_bytes = kSize;
    o.nowait_fast_path = false;
    auto store = SparseFileStore::Open(file, o);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<uint8_t> buf(512);
    ASSERT_TRUE(testing::ReadSync(GetParam().path, **store, 0, buf).ok());
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    SparseFileStore::Options child_options;
    child_options.nowait_fast_path = false;  // the ring path, as the test parameter says
    auto store = SparseFileStore::Open(file, child_options);
    if (!store.ok()) _exit(2);
    bool fua = GetParam().how == Durable::kFua;
    if (!testing::WriteSync(GetParam().path, **store, kSize / 2, data, fua).ok()) _exit(3);
    if (!fua && !testing::FlushSync(GetParam().path, **store).ok()) _exit(4);
    raise(SIGKILL);  // a crash: no destructors, no close, no exit handlers
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  SparseFileStore::Options reopen_options;
  reopen_options.nowait_fast_path = false;
  auto store = SparseFileStore::Open(file, reopen_options);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<uint8_t> back(kLen);
  ASSERT_TRUE(testing::ReadSync(GetParam().path, **store, kSize / 2, back).ok());
  EXPECT_EQ(back, data);
}

INSTANTIATE_TEST_SUITE_P(All, DurabilityTest,
                         ::testing::Values(Param{IoPath::kIoUring, Durable::kFlush},
                                           Param{IoPath::kIoUring, Durable::kFua},
                                           Param{IoPath::kInline, Durable::kFlush},
                                           Param{IoPath::kInline, Durable::kFua}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return testing::IoPathName(info.param.path) +
                                  (info.param.how == Durable::kFua ? "Fua" : "Flush");
                         });

}  // namespace
}  // namespace iser::store
