#include "node/exposure/memory_block_backend.h"

#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "node/exposure/exposure.h"
#include "tests/node/mock_exposure.h"

namespace iser::node {
namespace {

TEST(MemoryBlockBackendTest, RejectsBadGeometry) {
  EXPECT_FALSE(MemoryBlockBackend::Create(4096, 1000).ok());
  EXPECT_FALSE(MemoryBlockBackend::Create(4097, 512).ok());
  EXPECT_FALSE(MemoryBlockBackend::Create(0, 512).ok());
}

TEST(MemoryBlockBackendTest, WriteReadDiscard) {
  auto b = MemoryBlockBackend::Create(1 << 20, 4096);
  ASSERT_TRUE(b.ok());
  std::vector<uint8_t> data(8192, 0xab), back(8192);
  EXPECT_TRUE(
      WaitForCompletion([&](IoCompletion d) { (*b)->Write(4096, data, std::move(d)); }).ok());
  EXPECT_TRUE(
      WaitForCompletion([&](IoCompletion d) { (*b)->Read(4096, back, std::move(d)); }).ok());
  EXPECT_EQ(data, back);
  EXPECT_TRUE(
      WaitForCompletion([&](IoCompletion d) { (*b)->Discard(4096, 8192, std::move(d)); }).ok());
  EXPECT_TRUE(
      WaitForCompletion([&](IoCompletion d) { (*b)->Read(4096, back, std::move(d)); }).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(8192, 0));
  EXPECT_EQ((*b)->discarded_bytes(), 8192u);
  EXPECT_EQ(
      WaitForCompletion([&](IoCompletion d) { (*b)->Read(1 << 20, back, std::move(d)); }).code(),
      absl::StatusCode::kOutOfRange);
}

TEST(ExposureTest, StatusToErrno) {
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::UnavailableError("x")), EIO);
  EXPECT_EQ(StatusToErrno(absl::OutOfRangeError("x")), EINVAL);
}

TEST(ExposureTest, WaitForCompletionWaitsForAnotherThread) {
  MockBlockBackend backend;
  std::thread worker;
  EXPECT_CALL(backend, Flush).WillOnce([&](IoCompletion done) {
    worker = std::thread([done = std::move(done)]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      done(absl::DataLossError("lost"));
    });
  });
  absl::Status s = WaitForCompletion([&](IoCompletion done) { backend.Flush(std::move(done)); });
  worker.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace iser::node
