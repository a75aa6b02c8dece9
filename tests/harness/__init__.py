"""wasp's test harness: real redis-server and a real Kubernetes control plane.

Nothing here is a stand-in for wasp's own code; these modules start the real
processes that wasp talks to, on free ports in temporary directories, and
make sure none of them outlives the test run.
"""
