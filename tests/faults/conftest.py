"""Fixture options for the allocation-failure test."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "deflate"))


def pytest_addoption(parser):
    parser.addoption("--faults-server", action="store", default=None,
                     help="path to faults_server (fault-injection build)")
