"""What user code touches: Context, decorators, retry policy, serializer, replay."""
