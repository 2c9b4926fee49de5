"""The gRPC API's generated modules (``proto/featurestore/v1/serving.proto``, package
``featurestore.v1``): ``serving_pb2`` (the messages, with ``serving_pb2.pyi`` for type
checkers) and ``serving_pb2_grpc`` (the client stub ``FeatureServingStub``).

They are not committed: ``./run setup`` generates them with grpcio-tools whenever the
``.proto`` (or the grpcio-tools version) changed::

    python -m grpc_tools.protoc -Ifeaturestore/grpc_api=proto/featurestore/v1 \\
        --python_out=. --pyi_out=. --grpc_python_out=. proto/featurestore/v1/serving.proto

Import them as ``from featurestore.grpc_api import serving_pb2, serving_pb2_grpc``.
"""
