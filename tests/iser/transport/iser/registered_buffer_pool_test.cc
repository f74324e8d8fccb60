#include "iser/transport/iser/registered_buffer_pool.h"

#include <memory>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/base/io_buffer.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"

namespace iser::iser_transport {
namespace {

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = std::move(*EventLoop::Create());
    dev_ = softiwarp::OpenDevice(loop_.get());
    pd_ = *dev_->AllocPd();
    pool_ = std::make_unique<RegisteredBufferPool>(pd_.get(), rdma::kAccessRemoteWrite);
  }
  void TearDown() override {
    pool_.reset();
    pd_.reset();
    dev_.reset();
  }
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<softiwarp::SoftDevice> dev_;
  std::unique_ptr<rdma::ProtectionDomain> pd_;
  std::unique_ptr<RegisteredBufferPool> pool_;
};

TEST_F(PoolTest, LeasesAreRegisteredOnceAndReused) {
  uint8_t* first = nullptr;
  uint32_t lkey = 0;
  {
    auto a = pool_->Get(5000);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->capacity(), 8192u);  // next power of two
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data()) % 4096, 0u);
    first = a->data();
    lkey = a->lkey();
    const softiwarp::MrEntry* e = dev_->mrs().Find(lkey);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->access, rdma::kAccessRemoteWrite | rdma::kAccessLocalWrite);
    EXPECT_EQ(e->length, 8192u);
  }
  auto b = pool_->Get(8192);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data(), first);
  EXPECT_EQ(b->lkey(), lkey);
  auto c = pool_->Get(100);  // a different class: a new buffer
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->data(), first);
  EXPECT_EQ(pool_->registrations(), 2u);
  // A moved lease returns its buffer once.
  RegisteredBufferPool::Lease moved = std::move(*b);
  moved.Reset();
  auto d = pool_->Get(8000);
  auto e = pool_->Get(8000);
  ASSERT_TRUE(d.ok() && e.ok());
  EXPECT_NE(d->data(), e->data());
  EXPECT_EQ(pool_->registrations(), 3u);
}

TEST_F(PoolTest, LocalKeysAreCachedByAddress) {
  IoBuffer buf = IoBuffer::Allocate(64 << 10);
  auto k1 = pool_->LocalKey(buf.data(), 32 << 10);
  auto k2 = pool_->LocalKey(buf.data(), 64 << 10);  // longer: re-registered
  auto k3 = pool_->LocalKey(buf.data(), 4096);      // covered: cached
  ASSERT_TRUE(k1.ok() && k2.ok() && k3.ok());
  EXPECT_NE(*k1, *k2);
  EXPECT_EQ(*k2, *k3);
  EXPECT_EQ(pool_->registrations(), 2u);
  const softiwarp::MrEntry* e = dev_->mrs().Find(*k2);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->access, rdma::kAccessLocalWrite);  // never remotely accessible
  EXPECT_EQ(dev_->mrs().Find(*k1), nullptr);       // the shorter one was dropped
}

TEST_F(PoolTest, TooLargeIsAnError) {
  EXPECT_FALSE(pool_->Get(size_t{1} << 40).ok());
}

}  // namespace
}  // namespace iser::iser_transport
